"""How much better is better, and what a finished run means. Pure: no git, no files, no clock.

Noise. The same train.py does not give the same val_bpb twice (data order, kernels, step counts
that depend on speed, the load of the other workers). The first wave of a tag runs the unmodified
code on every worker at once, at least 1 + --noise-runs times, and sets

    threshold = max(floor, 2 x the sample standard deviation of those runs)

pooled within each device model, so the spread between GPUs and under parallel load counts.

Judging agent code. A run is compared with its own parent (the best it was proposed on) only,
on the same device model, in two steps:

  1. screen: its gain over the parent's value (the mean of the parent's runs there) must exceed
     the threshold, or it is discarded;
  2. paired confirmation: on the same worker the parent runs again (control), then the candidate
     again (confirm). Kept only if control - mean(the candidate's two runs) exceeds the
     threshold. Candidate, control, candidate in a row cancels a steady drift of the machine's
     speed, which an old mean measured under other conditions does not.

A change that beat its parent after another worker moved the best is re-applied onto the new best
(a three-way merge of train.py) and that code runs and is judged in turn: no keep is ever decided
by numbers measured on different parents.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from autoresearch.execution.parse import FIXABLE_REASONS
from autoresearch.model import (
    Candidate,
    Decision,
    Job,
    Kind,
    Outcome,
    Port,
    Task,
    row_for,
)

DEFAULT_FLOOR = 0.001  # bpb: below this no change is worth a commit, however quiet the GPU
STD_MULTIPLIER = 2.0
RULE = f"max(floor, {STD_MULTIPLIER:g} x sample std of the baseline runs)"


@dataclass
class Noise:
    threshold: float
    floor: float
    values: list[float]  # every baseline-wave val_bpb
    std: float | None  # pooled within device models
    spread: float | None
    runs_requested: int
    rule: str  # how the threshold was set, in words


def measure(groups: dict[str, list[float]], floor: float, runs_requested: int) -> Noise:
    """The threshold from the baseline wave's values, grouped by device model."""
    values = [v for group in groups.values() for v in group]
    dof = sum(len(g) - 1 for g in groups.values() if len(g) >= 2)
    if dof:
        pooled = sum((len(g) - 1) * statistics.variance(g) for g in groups.values() if len(g) >= 2)
        std = math.sqrt(pooled / dof)
    else:
        std = None
    spread = max(values) - min(values) if values else None
    if std is None and runs_requested == 0:
        rule = "noise runs off and one worker: floor only"
    elif std is None:
        rule = "fewer than 2 finished baseline runs on one device model: floor only"
    else:
        rule = RULE + (" (pooled within device models)" if len(groups) > 1 else "")
    threshold = max(floor, STD_MULTIPLIER * std) if std is not None else floor
    return Noise(threshold, floor, values, std, spread, runs_requested, rule)


def screen(value: float, parent_value: float | None, threshold: float) -> bool:
    """Worth confirming: beats the parent's value by more than the threshold (or the parent was
    never measured on this device model, so only the paired runs can tell)."""
    return parent_value is None or parent_value - value > threshold


def paired(runs: list[float], control: float, threshold: float) -> tuple[bool, float]:
    """(kept, gain) for a candidate's runs and the control run taken between them: their mean
    beats the control by more than the threshold, and neither run loses to it. The first run
    was chosen for beating its parent, so on its own it is the luckiest draw; a confirmation that
    loses to the control says the first run's conditions, not the change, made the gain (a
    machine whose load comes and goes kept such pairs; BENCHMARKS.md)."""
    gain = control - statistics.fmean(runs)
    return gain > threshold and max(runs) < control, gain


@dataclass
class Context:
    """What a decision needs besides the job and its outcome."""

    tag: str
    now: str
    best: str  # the current best commit
    threshold: float | None  # None during the baseline wave
    parent_value: float | None  # the mean of the parent's runs on this device model
    candidate: Candidate | None  # for CONTROL/CONFIRM: the candidate they serve
    max_fix_attempts: int


def decide(job: Job, out: Outcome, ctx: Context) -> Decision:
    """What a finished run means, as a Decision the coordinator carries out."""
    if job.kind in (Kind.BASELINE, Kind.NOISE):
        return _baseline(job, out, ctx)
    if job.kind == Kind.CONTROL:
        return _control(job, out, ctx)
    if job.kind == Kind.CONFIRM:
        return _confirm(job, out, ctx)
    return _agent_code(job, out, ctx)


def _row(job: Job, out: Outcome, ctx: Context, status: str, reason: str = ""):
    return row_for(job, out, status, reason, ctx.tag, ctx.now)


def _baseline(job: Job, out: Outcome, ctx: Context) -> Decision:
    if out.metrics is None:
        decision = Decision([_row(job, out, ctx, "crash")])
        if job.kind == Kind.BASELINE:
            decision.stop = (f"the baseline crashed ({out.reason}): {out.error or 'no error line'}"
                             f" (see {job.run_dir}/run.log); fix that, then run the same command")
        return decision
    status = "keep" if job.kind == Kind.BASELINE else "discard"
    return Decision([_row(job, out, ctx, status, "" if status == "keep" else "noise")])


def _control(job: Job, out: Outcome, ctx: Context) -> Decision:
    cand = ctx.candidate
    reason = f"control for #{job.subject}"
    if out.metrics is None:
        held = replace(cand, failed=f"its control run #{job.n} crashed ({out.reason})")
        return Decision([_row(job, out, ctx, "crash")], hold=held)
    held = replace(cand, control=out.metrics["val_bpb"])
    return Decision([_row(job, out, ctx, "discard", reason)], hold=held)


def _confirm(job: Job, out: Outcome, ctx: Context) -> Decision:
    cand = ctx.candidate
    first = cand.row
    tried = {first.experiment: job.commit, job.n: job.commit}
    if out.metrics is None or cand.failed or cand.control is None:
        why = cand.failed or f"its confirmation run #{job.n} crashed ({out.reason})"
        first = replace(first, status="discard", reason=f"not confirmed: {why}")
        second = _row(job, out, ctx, "crash" if out.metrics is None else "discard", first.reason)
        return Decision([first, second], tried=tried, settle=cand.n)
    runs = [first.val_bpb, out.metrics["val_bpb"]]
    ok, gain = paired(runs, cand.control, ctx.threshold)
    why = (f"{'confirmed' if ok else 'not confirmed'}: {gain:+.6f} vs control "
           f"{cand.control:.6f} (runs {runs[0]:.6f}, {runs[1]:.6f}; threshold "
           f"{ctx.threshold:.6f})")
    if not ok and gain > ctx.threshold:
        why += "; a run of it lost to the control"
    if ok and job.parent == ctx.best:
        first = replace(first, status="keep", reason=why)
        return Decision([first, _row(job, out, ctx, "keep", why)], keep=job.commit, settle=cand.n,
                        log=[f"#{cand.n} kept: {why}"])
    if ok:  # it beat its parent, but another worker moved the best meanwhile
        why += f"; the best moved to {ctx.best[:7]}: re-applying it there"
        port = Port(cand.n, job.worker, job.commit, job.parent, first.description, gain)
    else:
        port = None
    first = replace(first, status="discard", reason=why)
    return Decision([first, _row(job, out, ctx, "discard", why)], tried=tried, settle=cand.n,
                    port=port)


def _agent_code(job: Job, out: Outcome, ctx: Context) -> Decision:
    tried = {job.n: job.commit}
    if out.metrics is None:
        decision = Decision([_row(job, out, ctx, "crash")], tried=tried)
        attempt = job.fix_attempt + 1 if job.kind == Kind.FIX else 1
        if out.reason in FIXABLE_REASONS and attempt <= ctx.max_fix_attempts:
            decision.tasks.append(Task(Kind.FIX, job.worker, job.n, job.commit, job.parent,
                                       job.description, out.log_tail, attempt=attempt))
        elif job.kind == Kind.FIX and out.reason in FIXABLE_REASONS:
            decision.log.append(f"giving up on fixing after {job.fix_attempt} attempts")
        return decision
    value = out.metrics["val_bpb"]
    parent = ctx.parent_value
    vs = (f"{value - parent:+.6f} vs parent {job.parent[:7]} ({parent:.6f})"
          if parent is not None else f"parent {job.parent[:7]} not measured on {out.device}")
    if not screen(value, parent, ctx.threshold):
        return Decision([_row(job, out, ctx, "discard", vs)], tried=tried)
    if job.parent != ctx.best and parent is not None:
        why = f"{vs}: beat its parent, but the best moved to {ctx.best[:7]}: re-applying it there"
        port = Port(job.n, job.worker, job.commit, job.parent, job.description, parent - value)
        return Decision([_row(job, out, ctx, "discard", why)], tried=tried, port=port)
    candidate = Candidate(job.n, job.worker, job.commit, job.parent,
                          _row(job, out, ctx, "discard", vs))
    follow = [Job("", Kind.CONTROL, job.worker, job.parent, job.parent,
                  f"control for #{job.n}: its parent again", priority=0, subject=job.n),
              Job("", Kind.CONFIRM, job.worker, job.commit, job.parent,
                  f"confirm #{job.n}: {job.description}", agent=job.agent, priority=0,
                  subject=job.n, hypothesis=job.hypothesis)]
    return Decision([], hold=candidate, follow=follow,
                    log=[f"#{job.n} {vs}: confirming with its parent and itself run again"])

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
from statistics import NormalDist

import numpy as np

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


# ---- the noise model and the sequential paired test (pure; the simulator in scripts/ drives them)

NORMAL = NormalDist()


@dataclass(frozen=True)
class Run:
    """One finished run as the noise model sees it."""

    commit: str
    worker: str  # one GPU slot: its own fixed offset (clock, cooling, device model)
    value: float  # val_bpb


@dataclass
class Fit:
    """value = code effect (per commit) + worker offset (per worker, summing to zero) + noise."""

    values: dict[str, float]  # commit -> its value on the average worker
    ses: dict[str, float]  # commit -> standard error of that value (inf while std is unknown)
    offsets: dict[str, float]  # worker -> what it adds to every run
    within_std: float | None  # residual std of one run: None without a repeated commit
    dof: int  # residual degrees of freedom behind within_std


def fit(runs: list[Run]) -> Fit:
    """Least squares over all runs: one value per commit, one offset per worker (sum to zero),
    and the spread left within them. A commit run once fits itself exactly and adds nothing to
    the spread, so only commits run more than once or on more than one worker inform it."""
    commits = sorted({r.commit for r in runs})
    workers = sorted({r.worker for r in runs})
    if not runs:
        return Fit({}, {}, {}, None, 0)
    x = np.zeros((len(runs), len(commits) + len(workers) - 1))
    for i, r in enumerate(runs):
        x[i, commits.index(r.commit)] = 1.0
        w = workers.index(r.worker)
        if w < len(workers) - 1:
            x[i, len(commits) + w] = 1.0
        else:  # effect coding: the last worker's offset is minus the sum of the others
            x[i, len(commits):] = -1.0
    y = np.array([r.value for r in runs])
    beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    dof = len(runs) - int(rank)
    rss = float(np.sum((y - x @ beta) ** 2))
    std = math.sqrt(rss / dof) if dof > 0 else None
    free = list(beta[len(commits):])
    offsets = dict(zip(workers, [*free, -sum(free)], strict=True))
    cov = np.linalg.pinv(x.T @ x)
    ses = {c: std * math.sqrt(max(cov[i, i], 0.0)) if std is not None else math.inf
           for i, c in enumerate(commits)}
    return Fit({c: float(beta[i]) for i, c in enumerate(commits)}, ses,
               {w: float(o) for w, o in offsets.items()}, std, dof)


@dataclass(frozen=True)
class Rule:
    """How sure a keep must be. alpha: the chance that a change with no true gain above the floor
    is kept; power: the chance of keeping a change of min_detectable_gain; max_pairs: the most
    (control, candidate) pairs one candidate gets; floor: the user's minimum gain; screen_z:
    a first run goes on to pairs when its gain over its parent exceeds this many standard
    errors (lower: fewer real gains lost at the screen, more runs spent on pairs)."""

    alpha: float = 0.05
    power: float = 0.8
    max_pairs: int = 3
    floor: float = 0.0
    screen_z: float = 1.0

    @property
    def boundary(self) -> float:
        """The z a mean paired gain must pass at any look: alpha split over the max_pairs looks
        (Bonferroni), so the false-keep rate stays below alpha however early it stops."""
        return NORMAL.inv_cdf(1 - self.alpha / self.max_pairs)


def pair_std(within_std: float) -> float:
    """The std of one paired gain: two independent runs on workers whose offsets are known."""
    return math.sqrt(2) * within_std


def min_detectable_gain(within_std: float | None, rule: Rule) -> float | None:
    """The smallest true gain kept with the rule's power, using all max_pairs pairs."""
    if within_std is None:
        return None
    se = pair_std(within_std) / math.sqrt(rule.max_pairs)
    return rule.floor + (rule.boundary + NORMAL.inv_cdf(rule.power)) * se


def pair_gain(control: float, candidate: float, control_offset: float = 0.0,
              candidate_offset: float = 0.0) -> float:
    """The candidate's gain over its parent's control run, each corrected by its worker's offset
    (on the same worker the offsets cancel)."""
    return (control - candidate) - (control_offset - candidate_offset)


@dataclass
class Screened:
    go_on: bool  # worth paired runs
    gain: float | None  # over the parent's value on this worker; None: the parent never ran
    se: float | None


def screen_run(value: float, worker: str, parent: str, model: Fit, rule: Rule) -> Screened:
    """A first run against its parent's value on the same worker (the parent's fitted value plus
    this worker's offset). Clear losers stop here; the grey zone and wins go on to pairs."""
    if parent not in model.values or model.within_std is None:
        return Screened(True, None, None)
    expected = model.values[parent] + model.offsets.get(worker, 0.0)
    gain = expected - value
    se = math.sqrt(model.within_std ** 2 + model.ses[parent] ** 2)
    return Screened(gain - rule.floor > rule.screen_z * se, gain, se)


@dataclass
class Verdict:
    """What the pairs so far say: 'keep', 'discard' or 'more' (one more pair), with evidence."""

    action: str
    pairs: int
    mean: float  # mean paired gain
    low: float  # mean - boundary x se: kept only when this clears the floor
    high: float
    p: float  # one-sided p-value against the floor, times max_pairs (Bonferroni), at most 1

    def describe(self) -> str:
        return (f"{self.mean:+.6f} over {self.pairs} pair{'s' * (self.pairs != 1)} "
                f"[{self.low:+.6f}, {self.high:+.6f}], p {self.p:.3g}")


def sequential(gains: list[float], within_std: float | None, rule: Rule) -> Verdict:
    """After each pair: keep when the mean paired gain clears the floor by the boundary; discard
    when it is at or below the floor (futility) or the pairs are used up; else one more pair.
    Without a measured spread (no commit ran twice yet) the pairs' own spread is used from two
    pairs on, and a single pair never decides a keep."""
    n = len(gains)
    mean = statistics.fmean(gains)
    if within_std is not None:
        se = pair_std(within_std) / math.sqrt(n)
    elif n >= 2:
        se = statistics.stdev(gains) / math.sqrt(n)
    else:
        se = math.inf
    excess = mean - rule.floor
    z = excess / se if se > 0 else (math.inf if excess > 0 else -math.inf)
    p = min(1.0, rule.max_pairs * (1 - NORMAL.cdf(z))) if math.isfinite(z) else float(z < 0)
    half = rule.boundary * se
    if z > rule.boundary:
        action = "keep"
    elif mean <= rule.floor or n >= rule.max_pairs:
        action = "discard"
    else:
        action = "more"
    return Verdict(action, n, mean, mean - half, mean + half, p)

"""What a finished run came to: its log read by the harness, its files and the guarded areas
checked for tampering, metrics.json written beside the log; or that it must run again."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from autoresearch.execution.executor import RunResult, RunSpec
from autoresearch.execution.parse import (
    LOST,
    TAMPER,
    last_error,
    log_tail,
    read_run,
    read_target_run,
)
from autoresearch.model import Job, Outcome
from autoresearch.names import METRICS
from autoresearch.target import DEFAULT, Target
from autoresearch.workspace.git import text_hash
from autoresearch.workspace.guard import RUN_LABEL
from autoresearch.workspace.watch import Watch

LOST_RUNS = 2  # a run lost outside it (its node died) is run again this often, then recorded


def outcome_of(job: Job, spec: RunSpec, result: RunResult, device: str, profile: str,
               watch: Watch, backup: Path, log: Callable[[str, str], None],
               target: Target = DEFAULT) -> Outcome | None:
    """How the run came out; None if it must run again (the harness changed under it, or its
    node was lost). `device`: the worker's, when the executor does not say; `profile`: the
    harness's setting (not what train.py printed); `backup`: where undone changes are kept;
    `target`: whose metric the run reports (a target of its own: read_target_run)."""
    path = spec.run_dir / "run.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    if result.lost and job.lost < LOST_RUNS:
        job.lost += 1
        log(f"#{job.n} was lost ({result.lost}): running it again", "yellow")
        return None
    verdict = read_target_run(target.metric, result.returncode, text, result.timed_out,
                              spec.run_dir) if target.custom else \
        read_run(result.returncode, text, result.timed_out)
    if result.lost:  # lost again and again: recorded, never silently dropped
        verdict = replace(verdict, metrics=None, reason=LOST)
    out = Outcome(verdict.metrics, verdict.reason, profile or verdict.profile, result.seconds,
                  result.device or device, result.gpu, result.node, log_tail(text),
                  last_error(text))
    # the fixed files handed to the run: every file of the spec but the one agents edit
    tampered = [name for name in spec.files if name not in target.editable and text_hash(
        _read(spec.run_dir / name)) != text_hash(spec.files[name])]
    blame = watch.inspect(backup, f"{RUN_LABEL}{job.n}")
    if tampered or (blame.paths and (blame.sole or job.lost >= LOST_RUNS)):
        what = ", ".join(tampered + blame.paths[:3])
        log(f"#{job.n} changed {what} while it ran: void", "red")
        out = replace(out, metrics=None, reason=TAMPER, error=f"changed {what}")
    elif blame.paths or job.seen != watch.violations:
        if blame.paths:  # it or another run under way: each runs again, a few times at most
            job.lost += 1
        log(f"#{job.n} ran while the harness was tampered with: running it again", "yellow")
        return None
    write_metrics(spec.run_dir, job, result, out)
    return out


def write_metrics(run_dir: Path, job: Job, result: RunResult, out: Outcome) -> None:
    """metrics.json: how the run ended and what it measured, beside its log."""
    (run_dir / METRICS).write_text(json.dumps({
        "n": job.n, "kind": job.kind.value, "commit": job.commit, "parent": job.parent,
        "returncode": result.returncode, "timed_out": result.timed_out,
        "seconds": round(result.seconds, 1), "crash_reason": out.reason, "profile": out.profile,
        "worker": job.worker, "gpu": out.gpu, "device": out.device, "node": out.node,
        "busy_workers": job.busy, "summary": out.metrics}, indent=2))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""

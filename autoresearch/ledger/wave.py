"""The first wave: the unmodified code on every worker at once (the baseline, then noise runs),
from which the noise threshold is measured before any agent code runs."""

from __future__ import annotations

from autoresearch.ledger.state import State
from autoresearch.ledger.values import WAVE_KINDS
from autoresearch.model import Job, Kind, Row, is_measured
from autoresearch.policy import Noise

WAVE_JOBS = (Kind.BASELINE, Kind.NOISE)


def missing_wave(state: State, rows: list[Row], workers: int, noise_runs: int) -> list[Job]:
    """The wave's jobs still to queue (without ids): the baseline if it never ran, and noise
    runs until workers + noise_runs runs of the unmodified code have finished or are queued,
    spread over the workers that have none queued first: every worker once (its offset), and
    noise_runs more (the spread's degrees of freedom)."""
    wave = [r for r in rows if r.kind in WAVE_KINDS]
    queued = [j for j in state.jobs if j.kind in WAVE_JOBS]
    jobs = []
    if state.best_commit is None and not any(j.kind == Kind.BASELINE for j in queued):
        jobs.append((Kind.BASELINE, "baseline"))
    # a worker's offset needs one run (every replica that runs on it later refines it); twice
    # on every worker bought nothing on 2 simulated workers and cost ~1 % of the night's gain on
    # 8, where only the spread needs the extra runs (BENCHMARKS.md, "the first wave")
    target = workers + noise_runs
    missing = target - len([r for r in wave if r.kind == "noise" or r.status == "keep"])
    missing -= len(queued) + len(jobs)
    jobs += [(Kind.NOISE, "noise run: the baseline again")] * max(0, missing)
    busy = {j.worker for j in queued}
    free = [w for w in range(workers) if w not in busy] + list(range(workers))
    return [Job("", kind, free[i % len(free)], state.base_commit, state.base_commit, description,
                priority=0) for i, (kind, description) in enumerate(jobs)]


def wave_values(rows: list[Row]) -> list[float]:
    """The measured values of the unmodified code."""
    return [r.val_bpb for r in rows if r.kind in WAVE_KINDS and is_measured(r)]


def noise_line(noise: Noise, best: float | None) -> str:
    """What a noise measurement found, for the log."""
    std = f"{noise.std:.6f} ({noise.dof} dof)" if noise.std is not None else "unknown"
    offsets = ", ".join(f"{w}: {o:+.6f}" for w, o in sorted(noise.offsets.items()))
    return (f"noise: within-worker std {std}, worker offsets {{{offsets}}}; min detectable "
            f"gain {noise.threshold:.6f} ({noise.rule}); best {best:.6f}")

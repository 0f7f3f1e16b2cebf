"""The first wave: the unmodified code on every worker at once (the baseline, then noise runs),
from which the noise threshold is measured before any agent code runs."""

from __future__ import annotations

import math

from autoresearch.ledger.state import State
from autoresearch.ledger.values import WAVE_KINDS
from autoresearch.model import Job, Kind, Row, is_measured
from autoresearch.policy import Noise

WAVE_JOBS = (Kind.BASELINE, Kind.NOISE)


def wave_size(workers: int, noise_runs: int, rounds: int = 1) -> int:
    """How many runs of the unmodified code the first wave takes: whole rounds, a run on every
    worker each, at least `rounds` of them and at least 1 + noise_runs runs. Whole rounds because
    no agent code runs before the wave ends, so a worker without a run in the last round would
    idle. One round is enough for the offsets (every later run of a commit refines them): on 8
    simulated workers it captured ~1 point more of the night's gain than two; on 2 workers the
    second round's spread pays (BENCHMARKS.md, "The first wave"). The simulator calls it too."""
    return workers * max(rounds, math.ceil((1 + noise_runs) / workers))


def missing_wave(state: State, rows: list[Row], workers: int, noise_runs: int) -> list[Job]:
    """The wave's jobs still to queue (without ids): the baseline if it never ran, and noise
    runs until wave_size's runs have finished or are queued, spread over the workers that have
    none queued first."""
    wave = [r for r in rows if r.kind in WAVE_KINDS]
    queued = [j for j in state.jobs if j.kind in WAVE_JOBS]
    jobs = []
    if state.best_commit is None and not any(j.kind == Kind.BASELINE for j in queued):
        jobs.append((Kind.BASELINE, "baseline"))
    ran = [r for r in wave if r.kind == "noise" or r.status == "keep"]
    missing = wave_size(workers, noise_runs) - len(ran)
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

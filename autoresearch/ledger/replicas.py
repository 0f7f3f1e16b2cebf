"""Which worker runs a replica: the scheduling of follow-up runs over several workers.

A replica of a candidate (the default rule's further runs; with --controls, a crossover's
halves) is not tied to the worker that proposed it. These pure functions choose, from what a
worker may take, what it runs next, and say what a worker that has nothing of its own must wait
for. The coordinator calls them under its lock.
"""

from __future__ import annotations

from autoresearch.ledger.state import State
from autoresearch.model import Job, Phase, Row


def replicas_first(ready: list[Job], worker: int, ran: dict[int, set[str]],
                   workers: int) -> Job | None:
    """What `worker` runs next of the jobs it may take: follow-ups (replicas, pairs, ports)
    before new ideas, each in the order queued. A replica of a commit this worker has not run
    comes first (the fit learns its offset, offset errors and drift average out); one it has
    run it leaves to a worker that has not, which takes it as soon as it is free, unless it has
    nothing else to run (the simulator's `--schedule other`: never worse there, and half the
    false keeps under drift on 2+ workers). On one worker that is exactly the order queued."""

    def ran_it(job: Job, w: int) -> bool:
        return job.commit[:7] in ran.get(w, set())

    def rank(job: Job) -> tuple[bool, int, bool, int]:
        familiar = not job.any_worker or ran_it(job, worker)
        left = job.any_worker and ran_it(job, worker) and \
            any(not ran_it(job, w) for w in range(workers) if w != worker)
        return left, job.priority, familiar, int(job.id[1:])

    return min(ready, key=rank, default=None)


def count_busy(jobs: list[Job]) -> None:
    """A run started: every run under way now has at least this many workers training beside
    it (itself included)."""
    running = [j for j in jobs if j.phase == Phase.RUNNING]
    for job in running:
        job.busy = max(job.busy, len(running))


def ran_by_worker(rows: list[Row]) -> dict[int, set[str]]:
    """worker -> the commits it has run: results.tsv's rows, and the first runs of candidates,
    whose rows wait in state until they are decided."""
    ran: dict[int, set[str]] = {}
    for row in rows:
        ran.setdefault(row.worker or 0, set()).add(row.commit[:7])
    return ran


def may_become_candidate(state: State, held: list[Job]) -> bool:
    """Whether anything may still put a crossover half on another worker: a candidate, a port
    being carried or asked of an agent, or a job that may start (and become a candidate)."""
    return bool(state.candidates or state.porting or state.tasks) or \
        any(j not in held for j in state.jobs)

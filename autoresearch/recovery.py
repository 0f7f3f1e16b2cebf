"""Finishing what a killed loop left, as its journal (state.json) describes, before any thread
starts: proposals under way are dropped (their agents' processes killed, their work trees reset),
runs under way run again (their processes killed), records under way are finished."""

from __future__ import annotations

from autoresearch.execution.executor import RunSpec
from autoresearch.ledger.state import save_state, tag_dir
from autoresearch.model import Phase
from autoresearch.pipeline import Kit, Log, Worker, kill_agent


def resume(kit: Kit, workers: list[Worker], log: Log) -> None:
    """Finish what a killed loop left, as its journal describes (before any thread runs)."""
    coord, s = kit.coord, kit.coord.state
    s.rejections = 0  # a human restarted the loop: give the agents a fresh allowance
    for p in list(s.proposing):
        for pgid in kill_agent(p.marker):
            log(f"killed agent process group {pgid} left running by an interrupted loop")
        backup = tag_dir(kit.repo, s.tag) / "undone" / f"resume-w{p.worker}"
        undone = workers[p.worker].slot.reset(p.parent, backup) \
            if p.worker < len(workers) else []
        log(f"resuming: w{p.worker}'s proposal was interrupted: dropped"
            + (f" (undid {', '.join(undone)})" if undone else ""), "yellow")
    s.proposing = []
    for task in s.tasks:  # fewer workers than before: move it (a port's row waits on it)
        task.worker %= len(workers)
    for job in list(s.jobs):
        if job.worker >= len(workers):  # fewer workers than before: move it
            job.worker = job.worker % len(workers)
        if job.phase == Phase.RUNNING:
            spec = RunSpec(job.n, {}, kit.repo / job.run_dir, [], 0, kit.opts.grace)
            for pgid in kit.executor.clean_up(spec):
                log(f"killed process group {pgid} left running by an interrupted loop")
            log(f"resuming: run #{job.n} ({job.kind.value}) was interrupted: running it "
                "again", "yellow")
            job.phase = Phase.READY
        elif job.phase == Phase.RECORDING:
            log(f"resuming: finishing the record of run #{job.n}", "yellow")
            coord.finish(job)
    save_state(kit.repo, s)
    for n in coord.fresh_controls():
        log(f"resuming: #{n}'s control ran before the restart: its parent runs again "
            f"beside its confirmation", "yellow")

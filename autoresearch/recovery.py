"""Finishing what a killed loop left, as its journal (state.json) describes, before any thread
starts: proposals under way are dropped (their agents' processes killed, their work trees reset),
runs under way run again (their processes killed), records under way are finished, ports decided
are carried onto the best, and pairs cut by the restart are measured again."""

from __future__ import annotations

from autoresearch.execution.executor import RunSpec
from autoresearch.ledger.coordinator import Coordinator
from autoresearch.ledger.state import save_state, tag_dir
from autoresearch.model import Candidate, Job, Kind, Phase
from autoresearch.pipeline import Kit, Log, Worker, kill_agent
from autoresearch.policy import confirm_job


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
    for porting in s.porting:
        porting.port.worker %= len(workers)  # fewer workers than before: move it
        log(f"resuming: #{porting.port.n} was to be ported: carrying it onto the best", "yellow")
    coord.porter.carry_pending()
    renew_pairs(coord, log)


def renew_pairs(coord: Coordinator, log: Log) -> None:
    """A pair is judged on runs made together, never sessions apart: a candidate whose control
    ran before the restart but whose confirmation did not gets a new control first, and a port
    whose own run came before the restart runs again after its control."""
    with coord.lock:
        for cand in coord.state.candidates:
            if cand.pending is not None:  # a port's own run, its control not run yet
                _rerun_pending(coord, cand, log)
            else:
                _renew_control(coord, cand, log)
        save_state(coord.repo, coord.state)


def _rerun_pending(coord: Coordinator, cand: Candidate, log: Log) -> None:
    cand.pending = None
    coord.queue(confirm_job(cand))
    log(f"resuming: #{cand.n} ran before the restart: it runs again after its control",
        "yellow")


def _renew_control(coord: Coordinator, cand: Candidate, log: Log) -> None:
    """The candidate's control again, ahead of its queued confirmation (priority -1), when the
    control ran before the restart."""
    confirm = next((j for j in coord.state.jobs if j.kind == Kind.CONFIRM
                    and j.subject == cand.n and j.phase == Phase.READY), None)
    if cand.control is None or confirm is None:
        return
    cand.control = None
    coord.queue(Job("", Kind.CONTROL, confirm.worker, cand.parent, cand.parent,
                    f"control for #{cand.n}: its parent again (after a restart)", priority=-1,
                    subject=cand.n))
    log(f"resuming: #{cand.n}'s control ran before the restart: its parent runs again beside "
        f"its confirmation", "yellow")

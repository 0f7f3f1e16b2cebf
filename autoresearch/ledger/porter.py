"""Changes re-applied onto the current best: a queued proposal whose parent is no longer the best
is rebased before it runs, and a change that beat a parent the best has left since is ported.

The merge and its commit (workspace/merge.carry) run outside the coordinator's lock, so other
workers decide meanwhile; what came of them is handed back under the lock, which checks that the
best did not move in between. A port is journaled in state.json as pending (its run's row held
with it) in the same save that finishes its record, so a loop killed before the port is queued
carries it again after the restart: nothing is lost, and nothing is counted twice (the row is
written once, keyed by its run number; a commit made twice is an orphan that nothing points to).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from autoresearch.ledger.book import Ledger
from autoresearch.ledger.desk import Desk
from autoresearch.ledger.state import Porting, State, save_state
from autoresearch.memory.fingerprint import changes as change_summary
from autoresearch.memory.fingerprint import fingerprint
from autoresearch.model import Job, Kind, Port, Row, Task
from autoresearch.workspace.git import Git, commit_message
from autoresearch.workspace.merge import Carried, carry


class Porter:
    """Rebases proposals and ports changes onto the best: the git work without the lock, the
    results under it. Shares the coordinator's lock and state, and saves state.json itself."""

    def __init__(self, repo: Path, state: State, lock: threading.Condition, git: Git,
                 ledger: Ledger, desk: Desk, queue: Callable[[Job], Job], best: Callable[[], str],
                 log: Callable[[str, str], None], outcome: Callable[[Row], None]):
        self.repo, self.state, self.lock, self.git = repo, state, lock, git
        self.ledger, self.desk, self.queue, self.best = ledger, desk, queue, best
        self.log, self.outcome = log, outcome

    # ---- rebasing a queued proposal

    def rebase(self, job: Job, best: str) -> Carried:
        """The proposal's change merged onto `best` and committed there when it merges cleanly
        (no lock needed: no ref and no work tree is touched)."""
        return carry(self.git, job.parent, best, job.commit, commit_message(
            job.description, job.hypothesis, f"{job.kind.value}, rebased from "
            f"{job.commit[:7]} onto {best[:7]}"))

    def rebased(self, job: Job, best: str, carried: Carried) -> bool:
        """Under the lock, the best still `best`: whether the job runs now, as `carried` (or on
        its own parent when its edit does not merge); False when the rebase left a program
        already known, which is then dropped unrun and uncounted."""
        if carried.commit is None:
            self.log(f"{job.id}: proposed on {job.parent[:7]}, the best moved to {best[:7]} and "
                     f"the change to {self.git.editable} does not merge: it runs on its own "
                     f"parent", "yellow")
            return True
        job.commit, job.parent = carried.commit, best
        job.fingerprint = fingerprint(carried.files)
        job.description = f"{job.description} (rebased onto {best[:7]})"
        save_state(self.repo, self.state)
        self.log(f"{job.id}: the best moved on: rebased onto {best[:7]}", "cyan")
        return not self._drop_if_known(job)

    def _drop_if_known(self, job: Job) -> bool:
        """A rebased proposal whose program ran already, runs now or is the best itself (the
        change was kept meanwhile: an empty diff) is a duplicate: dropped unrun, uncounted."""
        known = self.desk.known_program(self.git.sources_at(job.commit), job.parent, besides=job)
        if known is None:
            return False
        self.state.jobs.remove(job)
        self.desk.reject(job.worker, f"not run: {known}", None,
                         f"Your last proposal was not run: once rebased onto the new best, "
                         f"{known}. Propose something different.")
        self.log(f"{job.id} dropped after its rebase, not run: {known}", "yellow")
        return True

    # ---- porting a change that beat its parent

    def hold(self, port: Port, rows: list[Row], subjects: dict[int | None, int | None],
             ) -> list[Row]:
        """Journal a decided port as pending (under the lock; the caller saves the state): its
        run's row waits with it. The decision's other rows, to write now."""
        held = next(r for r in rows if r.experiment == port.n)
        self.state.porting.append(Porting(port, held, subjects.get(port.n)))
        return [r for r in rows if r is not held]

    def pending(self, worker: int) -> bool:
        """A port for this worker is decided and not queued yet."""
        with self.lock:
            return any(p.port.worker == worker for p in self.state.porting)

    def carry_pending(self) -> None:
        """Carry every pending port onto the best, each merge outside the lock: a clean one is
        queued as a PORT job (its run's row written now), a conflict goes to the worker's agent
        (the row waits for its port). Call it without holding the lock."""
        with self.lock:
            pending = list(self.state.porting)
        for porting in pending:
            self._carry(porting)

    def _carry(self, porting: Porting) -> None:
        port = porting.port
        while True:
            with self.lock:
                best = self.best()
            description = self._description(port, best)
            carried = carry(self.git, port.parent, best, port.commit, commit_message(
                description, self.git.hypothesis(port.commit), f"port of #{port.n}"))
            with self.lock:
                if not any(p is porting for p in self.state.porting):
                    return  # another thread handed it over meanwhile
                if self.best() == best:
                    self._hand_over(porting, best, carried)
                    return
            # the best moved on during the merge: carry it onto the new one

    def _hand_over(self, porting: Porting, best: str, carried: Carried) -> None:
        """The carried port, queued or given to its agent, in one save with its pending entry
        gone (the row first: writing it again after a crash is skipped)."""
        s, port = self.state, porting.port
        if carried.commit is None:
            self.log(f"#{port.n}: the change to {self.git.editable} does not merge onto the "
                     f"new best {best[:7]}: asking worker {port.worker}'s agent to port it",
                     "yellow")
            s.tasks.append(Task(Kind.PORT, port.worker, port.n, port.commit, port.parent,
                                port.description, carried.text,
                                diff=self.git.diff(port.parent, port.commit), row=porting.row))
        else:
            self.ledger.write([porting.row], {port.n: porting.subject})
            self.queue(Job("", Kind.PORT, port.worker, carried.commit, best,
                           self._description(port, best), priority=0, subject=port.n,
                           changes=change_summary(self.git.sources_at(best), carried.files)))
        s.porting = [p for p in s.porting if p is not porting]
        save_state(self.repo, s)
        if carried.commit is not None:
            self.outcome(porting.row)
        self.lock.notify_all()

    @staticmethod
    def _description(port: Port, best: str) -> str:
        return f"port of #{port.n} onto {best[:7]}: {port.description}"

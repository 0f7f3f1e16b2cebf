"""The agents' side of a tag's state: proposals under way, the fix and port tasks waiting for an
agent, rejections (and what the agent is told about one), duplicates, and the agents' cost.

It shares the coordinator's lock and state: every method runs under the lock and saves
state.json before it returns, so a proposal is journaled before its agent starts and a loop
killed meanwhile finds it and drops it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from autoresearch.ledger.book import Ledger
from autoresearch.ledger.budget import Budget
from autoresearch.ledger.state import Proposing, State, save_state
from autoresearch.memory.fingerprint import Code, fingerprint, why_known
from autoresearch.memory.fingerprint import changes as change_summary
from autoresearch.model import AGENT_KINDS, Job, Kind, Task
from autoresearch.workspace.git import Git


class Desk:
    """Where workers' agents start, hand in and give up their proposals."""

    def __init__(self, repo: Path, state: State, lock: threading.Condition, git: Git,
                 ledger: Ledger, budget: Budget, queue: Callable[[Job], Job],
                 max_fix_attempts: int):
        self.repo, self.state, self.lock, self.git = repo, state, lock, git
        self.ledger, self.budget, self.queue = ledger, budget, queue
        self.max_fix_attempts = max_fix_attempts

    def next_task(self, worker: int, new_allowed: bool = True) -> Task | None:
        """The worker's next task for its agent: ports first (they finish a counted run whose
        row waits for them, and are never refused), then fixes, which are new experiments and
        come only while `new_allowed`."""
        with self.lock:
            mine = [t for t in self.state.tasks if t.worker == worker
                    and (new_allowed or t.kind == Kind.PORT)]
            return min(mine, key=lambda t: t.kind != Kind.PORT, default=None)

    def reserve(self, worker: int, parent: str, kind: str, marker: Callable[[int], str],
                max_experiments: int | None) -> int | None:
        """Journal a proposal about to start and return its number; None when --max-experiments
        would be exceeded by it (runs recorded, queued and proposals under way all count; a
        port finishes a counted experiment and is never refused)."""
        with self.lock:
            s = self.state
            ideas = sum(p.kind != Kind.PORT.value for p in s.proposing)  # a port counts nothing
            if kind != Kind.PORT.value and max_experiments is not None and \
                    self.budget.new_ideas() + ideas >= max_experiments:
                return None
            seq, s.next_id = s.next_id, s.next_id + 1
            s.proposing = [p for p in s.proposing if p.worker != worker]
            s.proposing.append(Proposing(worker, parent, kind, marker(seq)))
            save_state(self.repo, s)
            return seq

    def end_proposal(self, worker: int, task: Task | None) -> None:
        """The agent's turn is over (used or not); a task it worked on is done either way."""
        with self.lock:
            s = self.state
            s.proposing = [p for p in s.proposing if p.worker != worker]
            if task is not None:
                s.tasks = [t for t in s.tasks if t is not task]
            save_state(self.repo, s)

    def markers(self) -> list[str]:
        """The markers of the proposals under way (their agents' processes carry them)."""
        with self.lock:
            return [p.marker for p in self.state.proposing]

    def known_program(self, text: Code, parent: str, besides: Job | None = None) -> str | None:
        """Why this program need not run (it ran, runs now or is being confirmed), or None.
        `besides`: a queued job not to compare with (the one being checked)."""
        with self.lock:
            queued = [(j.worker, j.fingerprint) for j in self.state.jobs
                      if j is not besides and j.kind in AGENT_KINDS]
            confirming = [(c.n, c.commit, c.row.description) for c in self.state.candidates]
        return why_known(text, self.git.sources_at(parent), self.ledger.entries(), queued,
                         [(n, fingerprint(self.git.sources_at(commit)), description)
                          for n, commit, description in confirming])

    def submit(self, worker: int, kind: Kind, commit: str, parent: str, description: str,
               agent: str, cost: float | None, hypothesis: str, task: Task | None) -> Job:
        """A checked, committed proposal: queued for its worker's GPU."""
        with self.lock:
            s = self.state
            job = Job("", kind, worker, commit, parent, description, agent=agent, cost_usd=cost,
                      hypothesis=hypothesis,
                      changes=change_summary(self.git.sources_at(parent),
                                             self.git.sources_at(commit)))
            if task is not None:
                job.subject = task.subject
                job.fix_attempt = task.attempt if kind == Kind.FIX else 0
            self.queue(job)
            if task is not None and task.row is not None:  # the ported run's row, held till now
                self._settle_port(task, f"ported by the agent as {job.id}")
            s.rejections = 0
            s.feedback.pop(str(worker), None)
            save_state(self.repo, s)
            return job

    def reject(self, worker: int, reason: str, task: Task | None, feedback: str = "") -> int:
        """An unusable proposal: no row. Returns the number of rejections in a row."""
        with self.lock:
            s = self.state
            s.rejections += 1
            s.rejected_total += 1
            if feedback:
                s.feedback[str(worker)] = feedback
                s.duplicates += 1
            if task is not None and task.kind == Kind.FIX and task.attempt < self.max_fix_attempts:
                s.tasks.append(replace(task, attempt=task.attempt + 1))
            elif task is not None and task.row is not None:
                self._settle_port(task, f"the agent's port failed: {reason}")
            save_state(self.repo, s)
            return s.rejections

    def rejections(self) -> tuple[int, int]:
        """(unusable proposals in a row, all of them in the tag)."""
        with self.lock:
            return self.state.rejections, self.state.rejected_total

    def feedback(self, worker: int) -> str:
        """What the worker's agent is told about its last proposal that was not run."""
        with self.lock:
            return self.state.feedback.get(str(worker), "")

    def _settle_port(self, task: Task, how: str) -> None:
        self.ledger.write([replace(task.row, reason=f"{task.row.reason}; {how}")], {})

    def add_cost(self, cost: float | None) -> None:
        with self.lock:
            self.budget.add_cost(cost)
            save_state(self.repo, self.state)

    def spent(self) -> tuple[float, bool]:
        """The agents' cost so far in USD, and whether some call did not report its cost."""
        with self.lock:
            return self.budget.spent()

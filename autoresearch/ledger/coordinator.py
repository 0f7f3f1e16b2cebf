"""The decider: the one place that owns the best, results.tsv, the journal and the tag's refs.

Workers ask it for work and hand it their results; every method runs under one lock and saves
state.json before it returns, so the journal always says what to finish after a crash. A finished
run is decided by policy.decide (pure), journaled as RECORDING, then carried out in an order that
can be repeated safely: rows appended to results.tsv (skipping run numbers already there), refs
set (the branch by compare-and-swap from the job's parent), state saved in one atomic write. A
port the decision asks for is journaled in that write as pending and carried onto the best once
the lock is released (ledger/porter.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from autoresearch.agents.base import InFlight
from autoresearch.artifacts.checkpoints import run_path
from autoresearch.errors import UserError
from autoresearch.ledger.book import Ledger
from autoresearch.ledger.budget import Budget
from autoresearch.ledger.desk import Desk
from autoresearch.ledger.porter import Porter
from autoresearch.ledger.replicas import (
    count_busy,
    may_become_candidate,
    ran_by_worker,
    replicas_first,
)
from autoresearch.ledger.state import State, now_iso, save_state
from autoresearch.ledger.tags import tried_ref
from autoresearch.ledger.values import progress
from autoresearch.ledger.wave import WAVE_JOBS, missing_wave, noise_line, wave_values
from autoresearch.memory.fingerprint import fingerprint
from autoresearch.model import (
    AGENT_KINDS,
    Decision,
    Job,
    Kind,
    Outcome,
    Phase,
    Row,
)
from autoresearch.policy import Context, Rule, decide, measure
from autoresearch.target import DEFAULT, Metric
from autoresearch.verify.private import Verifier
from autoresearch.workspace.git import Git


class Coordinator:
    """Owns the tag's state, the best and the ledger, and decides. Git work (rebases and ports,
    outside the lock: ledger/porter.py), the ledger files (ledger/book.py), the agents' side
    (ledger/desk.py), the counting (ledger/budget.py) and which worker runs a replica
    (ledger/replicas.py) each live with their own concern."""

    def __init__(self, repo: Path, git: Git, state: State, *, noise_runs: int, rule: Rule,
                 max_fix_attempts: int, plateau_after: int, log: Callable[[str, str], None],
                 outcome: Callable[[Row], None], verifier: Verifier | None = None,
                 changed: threading.Condition | None = None, metric: Metric = DEFAULT.metric):
        self.repo, self.git, self.state = repo, git, state
        self.metric = metric  # results.tsv's metric column: rows hold its loss
        self.noise_runs = noise_runs
        self.rule = rule  # how sure a keep must be (the user's options)
        self.plateau_after = plateau_after
        self.max_fix_attempts = max_fix_attempts
        self.workers = 1  # how many workers take jobs (plan_wave says): replicas may go to any
        self.log, self.outcome = log, outcome
        self.verifier = verifier
        # notified when there is new work; its (reentrant) lock guards the state. The loop
        # passes its own, so a stop wakes a waiting worker as new work does.
        self.changed = changed or threading.Condition(threading.RLock())
        self.lock = self.changed
        self.ledger = Ledger(repo, state.tag, git,
                             lambda problem: self.log(f"warning: {problem}", "yellow"), metric)
        self.budget = Budget(state, self.ledger)
        self.desk = Desk(repo, state, self.lock, git, self.ledger, self.budget, self._queue,
                         max_fix_attempts)
        self.porter = Porter(repo, state, self.lock, git, self.ledger, self.desk, self._queue,
                             self.best, log, outcome)

    # ---- reading

    @property
    def tag(self) -> str:
        return self.state.tag

    def best(self) -> str:
        return self.state.best_commit or self.state.base_commit

    def threshold(self) -> float | None:
        return self.state.noise.threshold if self.state.noise else None

    def summary(self) -> dict[str, object]:
        """The loop's figures for live.json: the best, the threshold, the queue."""
        with self.lock:
            s = self.state
            return {"best_commit": (s.best_commit or "")[:7],
                    "best_val_bpb": self.ledger.best_value() if s.best_commit else None,
                    "threshold": self.threshold(),
                    "queued": sum(j.phase == Phase.READY for j in s.jobs),
                    "confirming": len(s.candidates)}

    def measuring_noise(self) -> bool:
        """The first wave (the unmodified code) has not given the noise threshold yet."""
        with self.lock:
            return self.state.noise is None

    def inflight(self) -> list[InFlight]:
        """Agent code queued or running now (the asking worker's own queued proposal too)."""
        with self.lock:
            return [InFlight(j.worker, j.description, j.changes) for j in self.state.jobs
                    if j.kind in AGENT_KINDS]

    def plateau(self) -> int:
        """Agent experiments since the last keep, once there are --plateau-after of them."""
        return self.ledger.plateau(self.plateau_after)

    def agent_runs(self, queued: bool = True) -> int:
        """New ideas tried or on their way, for --max-experiments (ledger/budget.py)."""
        with self.lock:
            return self.budget.new_ideas(queued)

    def held_back(self, max_experiments: int | None) -> list[Job]:
        """Queued new ideas that may not start: --max-experiments is reached."""
        with self.lock:
            return self.budget.held_back(max_experiments)

    # ---- the baseline wave

    def plan_wave(self, workers: int) -> None:
        """Queue the unmodified code on every worker at once: the baseline, and noise runs until
        max(workers, 1 + --noise-runs) of them have finished or are queued (ledger/wave.py)."""
        with self.lock:
            s = self.state
            self.workers = workers
            if s.noise is not None:
                return
            for job in missing_wave(s, self.ledger.rows(), workers, self.noise_runs):
                self._queue(job)
            if not any(j.kind in WAVE_JOBS for j in s.jobs):
                self._measure_noise()
            save_state(self.repo, s)

    def _measure_noise(self) -> None:
        """Refit the noise model to every measured run so far; say what it found."""
        s, rows = self.state, self.ledger.rows()
        values = wave_values(rows)
        if s.best_commit is None or not values:
            return
        s.noise = measure(self.ledger.model(rows), values, self.rule, s.best_commit[:7])
        self.log(noise_line(s.noise, self.metric.value(progress(rows).best)), "cyan")

    # ---- jobs

    def _queue(self, job: Job) -> Job:
        s = self.state
        job.id, s.next_id = f"j{s.next_id}", s.next_id + 1
        if job.kind in AGENT_KINDS:
            job.fingerprint = fingerprint(self.git.sources_at(job.commit))
        job.phase = Phase.READY
        s.jobs.append(job)
        self.changed.notify_all()
        return job

    def queue(self, job: Job) -> Job:
        """Journal a new job as READY (saved with the caller's next save_state)."""
        with self.lock:
            return self._queue(job)

    def has_jobs(self, worker: int, max_experiments: int | None = None) -> bool:
        """Anything queued (and allowed to start), running, waiting for paired runs or about to
        be ported on this worker, or a replica waiting that any worker may run."""
        with self.lock:
            held = self.held_back(max_experiments)
            return any(j not in held and (j.worker == worker or (
                j.any_worker and j.phase == Phase.READY)) for j in self.state.jobs) or \
                any(c.worker == worker for c in self.state.candidates) or \
                self.porter.pending(worker)

    def may_cross(self, max_experiments: int | None = None) -> bool:
        """Whether a worker with nothing of its own must stay: with --controls on several
        workers, a candidate's crossover puts half of each pair on another worker, and any
        run under way, port being carried or port an agent is asked for may become one."""
        with self.lock:
            return self.rule.controls and self.workers > 1 and \
                may_become_candidate(self.state, self.held_back(max_experiments))

    def has_ready_proposal(self, worker: int) -> bool:
        with self.lock:
            return any(j.worker == worker and j.priority == 1 and j.phase == Phase.READY
                       for j in self.state.jobs)

    def take(self, worker: int, max_experiments: int | None = None) -> Job | None:
        """The next job for a worker's GPU: its follow-ups first, then its agent's proposal
        (only once the noise threshold is known, and never a new idea past --max-experiments).
        A proposal whose parent is no longer the best is rebased onto it first (the merge and
        its commit outside the lock), when the edited file merges cleanly; one that the rebase
        leaves a program already tried is dropped (ledger/porter.py). A run that started and did
        not finish keeps its number, so it runs again as it was: a win is ported afterwards."""
        while True:
            with self.lock:
                job, best = self._next_ready(worker, max_experiments), self.best()
                if job is None or job.kind not in AGENT_KINDS or job.parent == best or \
                        job.n is not None:
                    return job
            carried = self.porter.rebase(job, best)
            with self.lock:
                if self.best() == best and any(j is job for j in self.state.jobs) and \
                        self.porter.rebased(job, best, carried):
                    return job
            # the best moved on meanwhile, or the rebase gave a known program: look again

    def _next_ready(self, worker: int, max_experiments: int | None) -> Job | None:
        """The job this worker runs next: its own follow-ups and any replica (replicas_first),
        then its proposal. A replica it takes is bound to it from now on: its row, the fit and
        state.json name the worker that runs it."""
        held = self.held_back(max_experiments)
        ready = [j for j in self.state.jobs if (j.worker == worker or j.any_worker)
                 and j not in held and j.phase == Phase.READY
                 and (j.priority <= 0 or self.state.noise is not None)]
        ran = ran_by_worker([*self.ledger.rows(), *(c.row for c in self.state.candidates)])
        job = replicas_first(ready, worker, ran, self.workers)
        if job is not None:
            job.worker = worker
        return job

    def start(self, job: Job, seen: int) -> Job:
        """Give the job its run number and run folder; journal it as RUNNING."""
        with self.lock:
            s = self.state
            if job.n is None:
                job.n, s.next_n = s.next_n, s.next_n + 1
                job.run_dir = run_path(self.tag, job.n, job.commit)
            job.phase, job.seen, job.busy = Phase.RUNNING, seen, 0  # a rerun counts afresh
            count_busy(s.jobs)
            save_state(self.repo, s)
            return job

    def requeue(self, job: Job) -> None:
        """A run that did not finish (aborted, or void through no fault of its own): run it
        again with the same number."""
        with self.lock:
            job.phase = Phase.READY
            job.priority = 0
            save_state(self.repo, self.state)
            self.changed.notify_all()

    def record(self, job: Job, out: Outcome) -> Decision:
        """Decide a finished run, journal the decision, carry it out."""
        with self.lock:
            rows = self.ledger.rows()
            candidate = next((c for c in self.state.candidates if c.n == job.subject), None)
            ctx = Context(self.tag, now_iso(), self.best(), self.ledger.model(rows), self.rule,
                          candidate, self.max_fix_attempts, self.metric.value, self.workers)
            decision = decide(job, out, ctx)
            if self.verifier is not None:  # held-out verification, before anything is done
                decision = self.verifier.review(job, out, decision, rows)
            job.phase, job.decision = Phase.RECORDING, decision
            save_state(self.repo, self.state)
            self.finish(job)
        self.porter.carry_pending()  # a port's merge and commit, outside the lock
        return decision

    def finish(self, job: Job) -> None:
        """Carry out a journaled decision. Every step can be repeated after a crash. A port is
        journaled as pending, its row held with it: carry_pending queues it, outside the lock."""
        with self.lock:
            s, d = self.state, job.decision
            subjects = {job.n: job.subject}
            rows = self.porter.hold(d.port, d.rows, subjects) if d.port else d.rows
            self.ledger.write(rows, subjects)
            for n, commit in d.tried.items():
                self.git.set_ref(tried_ref(self.tag, n), commit)
            if d.keep and self.git.resolve(f"refs/heads/{s.branch}") != d.keep:
                self.git.set_ref(f"refs/heads/{s.branch}", d.keep, old=job.parent)
            self._apply(job, d)
            s.jobs = [j for j in s.jobs if j.id != job.id]
            save_state(self.repo, s)
            for message in d.log:
                self.log(message, "cyan")
            for row in rows:
                self.outcome(row)
            self.changed.notify_all()
            if d.stop:
                raise UserError(d.stop)

    def _apply(self, job: Job, d: Decision) -> None:
        s = self.state
        if job.kind == Kind.BASELINE and d.rows[0].status == "keep":
            s.best_commit = job.commit
        if d.keep:
            s.best_commit = d.keep
        if d.settle is not None or d.hold is not None:
            number = d.settle if d.settle is not None else d.hold.n
            s.candidates = [c for c in s.candidates if c.n != number]
            if d.hold is not None:
                s.candidates.append(d.hold)
        for follow in d.follow:
            self._queue(follow)
        s.tasks += d.tasks
        wave_done = not any(j.kind in WAVE_JOBS for j in s.jobs if j is not job)
        if (job.kind in WAVE_JOBS and wave_done) or \
                (job.kind in (Kind.CONTROL, Kind.CONFIRM) and s.noise is not None):
            self._measure_noise()  # a control or a replica repeats a commit: one more look
        s.rejections = 0


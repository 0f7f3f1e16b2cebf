"""The decider: the one place that owns the best, results.tsv, the journal and the tag's refs.

Workers ask it for work and hand it their results; every method runs under one lock and saves
state.json before it returns, so the journal always says what to finish after a crash. A finished
run is decided by policy.decide (pure), journaled as RECORDING, then carried out in an order that
can be repeated safely: rows appended to results.tsv (skipping run numbers already there), refs
set (the branch by compare-and-swap from the job's parent), state saved in one atomic write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from autoresearch.agents.base import InFlight
from autoresearch.artifacts.checkpoints import run_path
from autoresearch.errors import UserError
from autoresearch.ledger.results import append_result, read_reported
from autoresearch.ledger.state import Proposing, State, now_iso, save_state, tag_dir
from autoresearch.ledger.tags import tried_ref
from autoresearch.ledger.values import WAVE_KINDS, model_of, progress
from autoresearch.memory import journal
from autoresearch.memory.fingerprint import changes as change_summary
from autoresearch.memory.fingerprint import fingerprint
from autoresearch.model import (
    AGENT_KINDS,
    Candidate,
    Decision,
    Job,
    Kind,
    Outcome,
    Phase,
    Port,
    Row,
    Task,
    is_measured,
)
from autoresearch.names import DEFAULT_MAX_PAIRS, RESULTS
from autoresearch.policy import Context, Fit, Rule, confirm_job, decide, measure
from autoresearch.redact import redact
from autoresearch.target import DEFAULT, Metric
from autoresearch.verify.private import Verifier
from autoresearch.workspace.git import Git, text_hash
from autoresearch.workspace.merge import merge


class Coordinator:
    def __init__(self, repo: Path, git: Git, state: State, *, noise_runs: int, noise_floor: float,
                 max_fix_attempts: int, plateau_after: int, log: Callable[[str, str], None],
                 outcome: Callable[[Row], None], max_pairs: int = DEFAULT_MAX_PAIRS,
                 verifier: Verifier | None = None, metric: Metric = DEFAULT.metric,
                 controls: bool = False):
        self.repo, self.git, self.state = repo, git, state
        self.metric = metric  # results.tsv's metric column: rows hold its loss
        self.noise_runs = noise_runs
        self.rule = Rule(max_pairs=max_pairs, floor=noise_floor, controls=controls)
        self.plateau_after = plateau_after
        self.max_fix_attempts = max_fix_attempts
        self.log, self.outcome = log, outcome
        self.verifier = verifier
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified when there is new work
        self.journal_path = tag_dir(repo, state.tag) / journal.JOURNAL
        # read many times per decision, by every worker: parsed again only when they change
        self.reported: set[str] = set()  # results.tsv's damaged rows, each warned about once
        self.results = Parsed(repo / RESULTS, lambda path: read_reported(
            path, lambda problem: self.log(f"warning: {problem}", "yellow"), self.reported,
            metric))
        self.journal = Parsed(self.journal_path, journal.load)

    # ---- reading

    @property
    def tag(self) -> str:
        return self.state.tag

    def best(self) -> str:
        return self.state.best_commit or self.state.base_commit

    def threshold(self) -> float | None:
        return self.state.noise.threshold if self.state.noise else None

    def rows(self) -> list[Row]:
        return [r for r in self.results.get() if r.tag == self.tag]

    def model(self, rows: list[Row] | None = None) -> Fit:
        """The noise model fitted to the tag's measured runs."""
        return model_of(rows if rows is not None else self.rows())

    def best_value(self) -> float | None:
        """The night's best: the baseline minus the kept paired gains (ledger/values.py)."""
        return progress(self.rows()).best

    def entries(self) -> list[journal.Entry]:
        return self.journal.get()

    def inflight(self) -> list[InFlight]:
        """Agent code queued or running now (the asking worker's own queued proposal too)."""
        with self.lock:
            return [InFlight(j.worker, j.description, j.changes) for j in self.state.jobs
                    if j.kind in AGENT_KINDS]

    def plateau(self) -> int:
        """Agent experiments since the last keep, once there are --plateau-after of them."""
        count = 0
        for row in reversed(self.rows()):
            if row.status == "keep":
                break
            count += row.kind in AGENT_KINDS
        return count if self.plateau_after and count >= self.plateau_after else 0

    def agent_runs(self, queued: bool = True) -> int:
        """New ideas tried or on their way, for --max-experiments: experiments and fixes
        recorded (in results.tsv, or in the journal when their row there is damaged), started
        (running, or to run again), and those whose rows are held (candidates, runs being
        ported); with `queued`, those waiting for a GPU too. Ports and confirmations finish
        what was counted and count for nothing."""
        with self.lock:
            s = self.state
            new = ("experiment", "fix")
            recorded = {r.experiment for r in self.rows() if r.kind in new} | \
                {e.n for e in self.entries() if e.kind in new}
            return len(recorded) + \
                sum(1 for j in s.jobs if j.kind.value in new and (queued or _started(j))) + \
                sum(1 for c in s.candidates if c.row.kind in new) + \
                sum(1 for t in s.tasks if t.row is not None and t.row.kind in new)

    def held_back(self, max_experiments: int | None) -> list[Job]:
        """Queued new ideas that may not start: the experiments already started reach
        --max-experiments (a later `run` with a lower limit than the queue was made under)."""
        with self.lock:
            if max_experiments is None or self.agent_runs(queued=False) < max_experiments:
                return []
            return [j for j in self.state.jobs if not _started(j)
                    and j.kind in (Kind.EXPERIMENT, Kind.FIX)]

    # ---- the baseline wave

    def plan_wave(self, workers: int) -> None:
        """Queue the unmodified code on every worker at once: the baseline, and noise runs until
        max(workers, 1 + --noise-runs) of them have finished or are queued."""
        with self.lock:
            s = self.state
            if s.noise is not None:
                return
            wave = [r for r in self.rows() if r.kind in WAVE_KINDS]
            queued = [j for j in s.jobs if j.kind in (Kind.BASELINE, Kind.NOISE)]
            jobs = []
            if s.best_commit is None and not any(j.kind == Kind.BASELINE for j in queued):
                jobs.append((Kind.BASELINE, "baseline"))
            # every worker twice (its offset needs two runs), unless noise runs are off
            target = max(workers * min(2, 1 + self.noise_runs), 1 + self.noise_runs)
            missing = target - len([r for r in wave if r.kind == "noise" or r.status == "keep"])
            missing -= len(queued) + len(jobs)
            jobs += [(Kind.NOISE, "noise run: the baseline again")] * max(0, missing)
            busy = {j.worker for j in queued}
            free = [w for w in range(workers) if w not in busy] + list(range(workers))
            for i, (kind, description) in enumerate(jobs):
                self._queue(Job("", kind, free[i % len(free)], s.base_commit, s.base_commit,
                                description, priority=0))
            if not jobs and not queued:
                self._measure_noise()
            save_state(self.repo, s)

    def _measure_noise(self) -> None:
        """Refit the noise model to every measured run so far; say what it found."""
        s, rows = self.state, self.rows()
        values = [r.val_bpb for r in rows if r.kind in WAVE_KINDS and is_measured(r)]
        if s.best_commit is None or not values:
            return
        s.noise = measure(self.model(rows), values, self.rule, self.noise_runs,
                          s.best_commit[:7])
        std = f"{s.noise.std:.6f} ({s.noise.dof} dof)" if s.noise.std is not None else "unknown"
        offsets = ", ".join(f"{w}: {o:+.6f}" for w, o in sorted(s.noise.offsets.items()))
        self.log(f"noise: within-worker std {std}, worker offsets {{{offsets}}}; min detectable "
                 f"gain {s.noise.threshold:.6f} ({s.noise.rule}); best "
                 f"{self.metric.value(progress(rows).best):.6f}", "cyan")

    # ---- jobs

    def _queue(self, job: Job) -> Job:
        s = self.state
        job.id, s.next_id = f"j{s.next_id}", s.next_id + 1
        if job.kind in AGENT_KINDS:
            job.fingerprint = fingerprint(self.git.file_at(job.commit))
        job.phase = Phase.READY
        s.jobs.append(job)
        self.changed.notify_all()
        return job

    def has_jobs(self, worker: int, max_experiments: int | None = None) -> bool:
        """Anything queued (and allowed to start), running or waiting for paired runs on this
        worker."""
        with self.lock:
            held = self.held_back(max_experiments)
            return any(j.worker == worker and j not in held for j in self.state.jobs) or \
                any(c.worker == worker for c in self.state.candidates)

    def has_ready_proposal(self, worker: int) -> bool:
        with self.lock:
            return any(j.worker == worker and j.priority == 1 and j.phase == Phase.READY
                       for j in self.state.jobs)

    def take(self, worker: int, max_experiments: int | None = None) -> Job | None:
        """The next job for a worker's GPU: its follow-ups first, then its agent's proposal
        (only once the noise threshold is known, and never a new idea past --max-experiments).
        A proposal whose parent is no longer the best is rebased onto it first, when train.py
        merges cleanly; one that the rebase leaves a program already tried is dropped."""
        with self.lock:
            while True:
                held = self.held_back(max_experiments)
                ready = [j for j in self.state.jobs if j.worker == worker and j not in held
                         and j.phase == Phase.READY
                         and (j.priority <= 0 or self.state.noise is not None)]
                if not ready:
                    return None
                job = min(ready, key=lambda j: (j.priority, int(j.id[1:])))
                if job.kind in AGENT_KINDS and job.parent != self.best() and self._rebase(job):
                    if self._drop_if_known(job):
                        continue
                return job

    def _rebase(self, job: Job) -> bool:
        """Move a proposal onto the best by a three-way merge of train.py; False when it does
        not merge (it then runs on its own parent)."""
        best = self.best()
        merged, conflicts = merge(self.git, self.git.file_at(job.parent),
                                  self.git.file_at(best), self.git.file_at(job.commit))
        if conflicts:
            self.log(f"{job.id}: proposed on {job.parent[:7]}, the best moved to {best[:7]} and "
                     f"{self.git.editable} does not merge: it runs on its own parent", "yellow")
            return False
        old = job.commit
        job.commit = self.git.commit_file(best, merged, self._message(
            job.description, job.hypothesis, f"{job.kind.value}, rebased from {old[:7]} onto "
            f"{best[:7]}"))
        job.parent = best
        job.fingerprint = fingerprint(merged)
        job.description = f"{job.description} (rebased onto {best[:7]})"
        save_state(self.repo, self.state)
        self.log(f"{job.id}: the best moved on: rebased onto {best[:7]}", "cyan")
        return True

    def _drop_if_known(self, job: Job) -> bool:
        """A rebased proposal whose program ran already, runs now or is the best itself (the
        change was kept meanwhile: an empty diff) is a duplicate: dropped unrun, uncounted."""
        known = self.known_program(self.git.file_at(job.commit), job.parent, besides=job)
        if known is None:
            return False
        self.state.jobs.remove(job)
        self.reject(job.worker, f"not run: {known}", None,
                    f"Your last proposal was not run: once rebased onto the new best, {known}. "
                    f"Propose something different.")
        self.log(f"{job.id} dropped after its rebase, not run: {known}", "yellow")
        return True

    def fresh_controls(self) -> list[int]:
        """After a restart: a candidate whose control ran but whose confirmation did not gets a
        new control first, so the pair it is judged on is measured together, not sessions
        apart (and a port whose own run came before the restart runs again after its control).
        The candidates whose control was renewed."""
        with self.lock:
            s, renewed = self.state, []
            for cand in s.candidates:
                if cand.pending is not None:  # a port's own run, its control not run yet
                    self._rerun_pending(cand)
                    continue
                confirm = next((j for j in s.jobs if j.kind == Kind.CONFIRM
                                and j.subject == cand.n and j.phase == Phase.READY), None)
                if cand.control is None or confirm is None:
                    continue
                cand.control = None
                self._queue(Job("", Kind.CONTROL, confirm.worker, cand.parent, cand.parent,
                                f"control for #{cand.n}: its parent again (after a restart)",
                                priority=-1, subject=cand.n))
                renewed.append(cand.n)
            save_state(self.repo, s)
            return renewed

    def _rerun_pending(self, cand: Candidate) -> None:
        """A port's run and a control after a restart would be a pair measured sessions apart:
        the port runs again after its control instead."""
        cand.pending = None
        self._queue(confirm_job(cand))
        self.log(f"resuming: #{cand.n} ran before the restart: it runs again after its control",
                 "yellow")

    def start(self, job: Job, seen: int) -> Job:
        """Give the job its run number and run folder; journal it as RUNNING."""
        with self.lock:
            s = self.state
            if job.n is None:
                job.n, s.next_n = s.next_n, s.next_n + 1
                job.run_dir = run_path(self.tag, job.n, job.commit)
            job.phase, job.seen = Phase.RUNNING, seen
            save_state(self.repo, s)
            return job

    def code(self, commit: str) -> dict[str, str | bytes]:
        """The files a run needs: the editable file of the commit and the fixed harness (the
        files the tag guards, as bytes: they may be binary), hash-checked."""
        files: dict[str, str | bytes] = {self.git.editable: self.git.file_at(commit)}
        files.update((name, self.git.blob_at(commit, name)) for name in self.state.fixed_sha256)
        check_fixed(files, self.state)
        return files

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
            rows = self.rows()
            candidate = next((c for c in self.state.candidates if c.n == job.subject), None)
            ctx = Context(self.tag, now_iso(), self.best(), self.model(rows), self.rule,
                          candidate, self.max_fix_attempts)
            decision = decide(job, out, ctx)
            if self.verifier is not None:  # held-out verification, before anything is done
                decision = self.verifier.review(job, out, decision, rows)
            job.phase, job.decision = Phase.RECORDING, decision
            save_state(self.repo, self.state)
            self.finish(job)
            return decision

    def finish(self, job: Job) -> None:
        """Carry out a journaled decision. Every step can be repeated after a crash."""
        with self.lock:
            s, d = self.state, job.decision
            rows, port = list(d.rows), self._plan_port(d.port) if d.port else None
            if isinstance(port, Task):  # its row waits for the agent's port (or its failure)
                port.row = next(r for r in rows if r.experiment == d.port.n)
                rows.remove(port.row)
            self._ledger(rows, {job.n: job.subject})
            for n, commit in d.tried.items():
                self.git.set_ref(tried_ref(self.tag, n), commit)
            if d.keep and self.git.resolve(f"refs/heads/{s.branch}") != d.keep:
                self.git.set_ref(f"refs/heads/{s.branch}", d.keep, old=job.parent)
            self._apply(job, d)
            if isinstance(port, Task):
                s.tasks.append(port)
            elif port is not None:
                self._queue(port)
            s.jobs = [j for j in s.jobs if j.id != job.id]
            save_state(self.repo, s)
            for message in d.log:
                self.log(message, "cyan")
            for row in rows:
                self.outcome(row)
            self.changed.notify_all()
            if d.stop:
                raise UserError(d.stop)

    def rebuild_journal(self) -> int:
        """Write the journal entries of rows that have none (the file was lost, or a loop died
        between the row and its entry), from results.tsv and the commits. How many it wrote."""
        with self.lock:
            known = {e.n for e in self.entries()}
            missing = [r for r in self.rows() if r.experiment not in known]
            self._journal(missing, {r.experiment: journal.subject_of(r) for r in missing})
            return len(missing)

    def _ledger(self, rows: list[Row], subjects: dict[int | None, int | None]) -> None:
        """Append rows not yet in results.tsv (fsynced), then their journal entries."""
        all_rows = self.rows()
        present = {r.experiment for r in all_rows}
        for row in rows:
            if row.experiment not in present:
                append_result(self.repo / RESULTS, row, self.metric)
        self._journal(rows, subjects)

    def _journal(self, rows: list[Row], subjects: dict[int | None, int | None]) -> None:
        model, chain = self.model(), progress(self.rows())
        bests = {step.row.experiment: step.best for step in chain.steps}
        earlier = self.entries()
        known = {e.n for e in earlier}
        new = []
        for row in rows:
            if row.experiment in known:
                continue
            code = self.git.file_at(row.commit)
            parent = None if row.kind == "baseline" else \
                row.parent or self.git.parent(row.commit)  # rows of older versions: git's
            parent_value = _expected(model, parent, row.worker) if parent and \
                row.kind not in ("noise", "control") else None
            new.append(journal.make_entry(
                row, code, self.git.file_at(parent) if parent else None, parent_value,
                self.git.hypothesis(row.commit), earlier + new, subjects.get(row.experiment),
                bests.get(row.experiment) if row.status == "keep" else None))
        journal.append(self.journal_path, new)

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
        wave_done = not any(j.kind in (Kind.BASELINE, Kind.NOISE) for j in s.jobs if j is not job)
        if (job.kind in (Kind.BASELINE, Kind.NOISE) and wave_done) or \
                (job.kind in (Kind.CONTROL, Kind.CONFIRM) and s.noise is not None):
            self._measure_noise()  # a control or a replica repeats a commit: one more look
        s.rejections = 0

    def _plan_port(self, port: Port) -> Job | Task:
        """Re-apply a change that beat its parent onto the current best: a clean three-way merge
        becomes a PORT job; a conflict goes to the worker's agent, once."""
        best = self.best()
        merged, conflicts = merge(self.git, self.git.file_at(port.parent),
                                  self.git.file_at(best), self.git.file_at(port.commit))
        description = f"port of #{port.n} onto {best[:7]}: {port.description}"
        if conflicts:
            self.log(f"#{port.n}: {self.git.editable} does not merge onto the new best "
                     f"{best[:7]}: asking worker {port.worker}'s agent to port it", "yellow")
            return Task(Kind.PORT, port.worker, port.n, port.commit, port.parent,
                        port.description, merged, diff=self.git.diff(port.parent, port.commit))
        commit = self.git.commit_file(best, merged, self._message(
            description, self.git.hypothesis(port.commit), f"port of #{port.n}"))
        return Job("", Kind.PORT, port.worker, commit, best, description, priority=0,
                   subject=port.n, changes=change_summary(self.git.file_at(best), merged))

    # ---- proposals

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
            if kind != Kind.PORT.value and max_experiments is not None and \
                    self.agent_runs() + len(s.proposing) >= max_experiments:
                return None
            seq, s.next_id = s.next_id, s.next_id + 1
            s.proposing = [p for p in s.proposing if p.worker != worker]
            s.proposing.append(Proposing(worker, parent, kind, marker(seq), now_iso()))
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

    def known_program(self, text: str, parent: str, besides: Job | None = None) -> str | None:
        """Why this program need not run (it ran, runs now or is being confirmed), or None.
        `besides`: a queued job not to compare with (the one being checked)."""
        mark = fingerprint(text)
        if fingerprint(self.git.file_at(parent)) == mark:
            return "it changes nothing but comments, blank lines or formatting"
        same = [e for e in self.entries() if e.fingerprint == mark]
        first = next((e for e in same if e.kind in ("baseline", "experiment", "fix", "port")),
                     same[0] if same else None)  # the run that tried it, not its re-runs
        if first is not None:
            delta = f" ({first.delta:+.6f} vs its parent)" if first.delta is not None else ""
            return f"this is #{first.n} again{delta}, {first.status}: {first.description}"
        with self.lock:
            for job in self.state.jobs:
                if job is not besides and job.kind in AGENT_KINDS and job.fingerprint == mark:
                    return f"worker {job.worker} is about to run this very program"
            for cand in self.state.candidates:
                if fingerprint(self.git.file_at(cand.commit)) == mark:
                    return f"this is #{cand.n} again, being confirmed now: {cand.row.description}"
        return None

    def submit(self, worker: int, kind: Kind, commit: str, parent: str, description: str,
               agent: str, cost: float | None, hypothesis: str, task: Task | None) -> Job:
        """A checked, committed proposal: queued for its worker's GPU."""
        with self.lock:
            s = self.state
            job = Job("", kind, worker, commit, parent, description, agent=agent, cost_usd=cost,
                      hypothesis=hypothesis,
                      changes=change_summary(self.git.file_at(parent), self.git.file_at(commit)))
            if task is not None:
                job.subject = task.subject
                job.fix_attempt = task.attempt if kind == Kind.FIX else 0
            self._queue(job)
            if task is not None and task.row is not None:  # the ported run's row, held till now
                self._settle_port(task, f"ported by the agent as {job.id}")
            s.rejections = 0
            s.feedback.pop(str(worker), None)
            save_state(self.repo, s)
            return job

    def _settle_port(self, task: Task, how: str) -> None:
        self._ledger([replace(task.row, reason=f"{task.row.reason}; {how}")], {})

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

    def add_cost(self, cost: float | None) -> None:
        with self.lock:
            if cost is None:
                self.state.cost_unknown = True
            else:
                self.state.cost_usd += cost
            save_state(self.repo, self.state)

    @staticmethod
    def _message(description: str, hypothesis: str, what: str) -> str:
        body = f"\n\nHypothesis: {hypothesis}" if hypothesis else ""
        return redact(f"{description}{body}\n\nautoresearch ({what})")  # a push publishes it

    def message(self, description: str, hypothesis: str, kind: Kind, worker: int) -> str:
        return self._message(description, hypothesis, f"{self.tag}, {kind.value}, worker {worker}")


def _expected(model: Fit, commit: str, worker: int | None) -> float | None:
    """A commit's value on one worker: its fitted value plus that worker's offset."""
    value = model.values.get(commit[:7])
    return None if value is None else value + model.offsets.get(str(worker or 0), 0.0)


def _started(job: Job) -> bool:
    """Given a run number: running, or interrupted and to run again under that number."""
    return job.n is not None


def check_fixed(files: dict[str, str | bytes], state: State) -> None:
    """The harness must not change during a tag: numbers before and after would not compare."""
    changed = [n for n, sha in state.fixed_sha256.items() if text_hash(files[n]) != sha]
    if changed:
        raise UserError(f"{', '.join(changed)} changed since tag {state.tag} started (sha256 "
                        f"differs): the harness is fixed for a run; start a new --tag")


class Parsed:
    """A file's parse, redone only when the file changed (its size, mtime or inode)."""

    def __init__(self, path: Path, parse: Callable[[Path], list]):
        self.path, self.parse = path, parse
        self.key: tuple | None = None
        self.value: list = []

    def get(self) -> list:
        try:
            st = self.path.stat()
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            key = None
        if key is None or key != self.key:
            self.value, self.key = self.parse(self.path), key
        return self.value

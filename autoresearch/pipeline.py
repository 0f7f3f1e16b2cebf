"""One worker's experiment pipeline: propose -> check -> commit, then run -> parse -> record.

A worker is an agent session with a work tree of its own, and a GPU slot. It has two threads, so
its agent prepares the next proposal while its GPU trains the last one:

    proposer  the agent edits train.py in the work tree (a fresh experiment on the current best,
              or a fix / port task for this worker); the loop undoes anything but train.py,
              rejects what cannot or need not run (no change, no compile, a program that ran
              already) and commits the rest on its parent; one proposal waits at most.
    runner    takes the worker's next job (follow-up runs first), runs exactly the committed
              code in a fresh run folder, reads the outcome, and hands it to the coordinator,
              which alone decides and records.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from autoresearch.agents import Agent, AgentError, AgentRefused, AgentRequest, Proposal
from autoresearch.agents.base import Port as PortRequest
from autoresearch.artifacts.aftercare import tidy_weights
from autoresearch.errors import UserError
from autoresearch.execution.executor import RunResult, RunSpec
from autoresearch.execution.parse import LOST, TAMPER, Progress, last_error, log_tail, read_run
from autoresearch.execution.procs import kill_marked
from autoresearch.ledger.state import tag_dir
from autoresearch.memory.digest import build_digest
from autoresearch.model import Job, Kind, Outcome, Task
from autoresearch.names import FIXED_FILES
from autoresearch.redact import sanitize
from autoresearch.verify.private import without_private
from autoresearch.workspace.git import TRAIN, text_hash
from autoresearch.workspace.guard import PROGRAM, RUN_LABEL
from autoresearch.workspace.slots import Slot

if TYPE_CHECKING:
    from autoresearch.config import Harness, Options
    from autoresearch.execution.executor import Executor
    from autoresearch.ledger.coordinator import Coordinator
    from autoresearch.workspace.git import Git
    from autoresearch.workspace.guard import Blame, Guard, Suspects

HISTORY_ROWS = 30  # recent rows in the agent's request; the digest covers the whole night
MAX_REJECTIONS = 12  # unusable proposals in a row before the loop asks for a human
LOST_RUNS = 2  # a run lost outside it (its node died) is run again this often, then recorded
BACKOFF_EVERY = 3  # a worker pauses after every this many rejections in a row...
BACKOFF_MAX = 900.0  # ...first for --backoff seconds, doubling, up to this
# Set for the agent's processes (CLI agents run in sessions of their own): how a resumed loop
# finds an agent left running by a loop killed with -9.
AGENT_ENV = "AUTORESEARCH_AGENT_RUN"


class Host(Protocol):
    """What a worker uses of the loop that runs it (scheduler.Loop), named here so that the
    pipeline does not import the scheduler that imports it."""

    repo: Path
    opts: Options
    harness: Harness
    timeout: float
    git: Git
    guard: Guard
    suspects: Suspects
    executor: Executor
    coord: Coordinator
    hidden: list[Path] | None
    stopping: str
    closing: bool

    def may_propose(self) -> bool: ...
    def drained(self, worker: Worker) -> bool: ...
    def why_stop(self) -> str | None: ...
    def should_abort(self) -> bool: ...
    def fail(self, error: BaseException) -> None: ...
    def check_guard(self, backup: Path, who: str) -> Blame: ...
    def wait(self, seconds: float) -> None: ...
    def sleep(self, seconds: float) -> None: ...
    def log(self, message: str, style: str = "") -> None: ...
    def live(self, worker: int | None, **values: object) -> None: ...


class Worker:
    def __init__(self, loop: Host, k: int, agent: Agent, slot: Slot, gpu: str | None,
                 device: str):
        self.loop, self.k, self.agent, self.slot = loop, k, agent, slot
        self.gpu, self.device = gpu, device
        self.coord = loop.coord
        self.rejected = 0  # this worker's rejections in a row (for its back-off)
        self.last_rejection = ""
        self.proposing = False
        self.running: Job | None = None
        self.busy_seconds = 0.0  # time its GPU spent in train.py (the busy fraction)

    # ---- the proposer thread

    def propose_forever(self) -> None:
        while not self.loop.closing:
            new_allowed = self.loop.may_propose()
            task = self.coord.next_task(self.k, new_allowed)
            # past the limit only a port comes: it finishes a counted run, whose row waits on it
            may = new_allowed or (task is not None and not self.loop.stopping)
            if not may or (task is None and self.has_work()):
                self.loop.wait(0.5)
                continue
            try:
                self.propose(task)
            except BaseException as e:  # noqa: BLE001 (the main thread re-raises it)
                self.loop.fail(e)
                return

    def propose(self, task: Task | None) -> None:
        coord, loop = self.coord, self.loop
        kind = task.kind if task else Kind.EXPERIMENT
        parent = task.parent if task and task.kind == Kind.FIX else coord.best()
        seq = coord.reserve(self.k, parent, kind.value, self.marker_for, loop.opts.max_experiments)
        if seq is None:
            self.loop.wait(0.5)
            return
        marker = self.marker_for(seq)
        backup = tag_dir(loop.repo, coord.tag) / "undone" / f"w{self.k}-{seq}"
        self.proposing = True
        try:
            job = self.propose_on(task, kind, parent, seq, marker, backup)
        finally:
            self.proposing = False
        # Not in a `finally`: a proposal cut short by an error stays journaled, and the next
        # `run` drops it (kills the agent's processes, resets the work tree), as after kill -9.
        coord.end_proposal(self.k, task)
        if job is not None:
            loop.log(f"w{self.k}: {job.id} ready: {job.description}")
        loop.live(self.k, agent_phase="idle", agent_task="")
        if coord.state.rejections >= MAX_REJECTIONS:
            raise Unusable(coord, self.last_rejection)

    def propose_on(self, task: Task | None, kind: Kind, parent: str, seq: int, marker: str,
                   backup: Path) -> Job | None:
        """One agent turn in the work tree; the queued job, or None if it was rejected."""
        loop, coord = self.loop, self.coord
        self.slot.reset(parent, backup)
        train_py = loop.git.file_at(task.commit if kind == Kind.FIX else parent)
        (self.slot.path / TRAIN).write_text(train_py)
        refs = loop.git.refs("refs/heads", "refs/tags")
        request = self.request(task, parent, train_py, seq, marker)
        loop.live(self.k, agent_phase="proposing", agent_task=self.title(task))
        loop.suspects.begin(self.who)
        try:
            proposal, refusal = self.ask(request)
        except Exception:  # whatever the agent did outside train.py is undone, even so
            loop.suspects.end(self.who)
            self.check(parent, backup, refs)
            raise
        loop.suspects.end(self.who)
        reason, notes = self.check(parent, backup, refs)
        for note in notes:
            loop.log(f"w{self.k}: {note}", "yellow")
        if proposal is None or reason:
            self.reject(f"the agent gave no usable edit: {refusal}" if proposal is None
                        else reason, task)
            return None
        text = (self.slot.path / TRAIN).read_text()
        known = coord.known_program(text, parent)
        if known:
            self.reject(f"not run: {known}", task,
                        feedback=f"Your last proposal was not run: {known}. Propose something "
                                 f"different.")
            return None
        description = sanitize(proposal.description) or "(no description)"
        hypothesis = sanitize(proposal.hypothesis)
        commit = loop.git.commit_file(parent, text,
                                      coord.message(description, hypothesis, kind, self.k))
        self.rejected = 0
        return coord.submit(self.k, kind, commit, parent, description, self.agent.name,
                            proposal.usage.cost_usd, hypothesis, task)

    def has_work(self) -> bool:
        """Enough for this worker's GPU for now: one proposal waiting (latency hiding), or with
        --no-prefetch, anything queued, running or being confirmed."""
        if self.loop.opts.prefetch:
            return self.coord.has_ready_proposal(self.k)
        return self.running is not None or \
            self.coord.has_jobs(self.k, self.loop.opts.max_experiments)

    @property
    def who(self) -> str:
        """This worker's agent among the guard's suspects."""
        return f"w{self.k}'s agent"

    def marker_for(self, seq: int) -> str:
        return f"{self.loop.repo.resolve()}#{self.coord.tag}#w{self.k}#{seq}"

    def title(self, task: Task | None) -> str:
        if task is None:
            return "a new experiment"
        return f"{task.kind.value} #{task.subject}: {task.description}"

    def request(self, task: Task | None, parent: str, train_py: str, seq: int,
                marker: str) -> AgentRequest:
        coord, loop = self.coord, self.loop
        # as it was when the loop started: the guard puts back any write to it, and an agent's
        # write must not reach another's prompt before the next scan does
        program_text = loop.guard.trusted(loop.repo / PROGRAM)
        rows, entries = without_private(coord.rows(), coord.entries())  # agents never see them
        port = None
        if task is not None and task.kind == Kind.PORT:
            port = PortRequest(task.subject, task.description, task.diff, task.detail)
        return AgentRequest(
            repo=self.slot.path, program=program_text, train_py=train_py,
            history=rows[-HISTORY_ROWS:],
            crash_log=task.detail if task and task.kind == Kind.FIX else None,
            best_val_bpb=coord.best_value(), noise_threshold=coord.threshold(),
            experiment=seq, worker=self.k, env={AGENT_ENV: marker}, journal=entries,
            digest=build_digest(entries, program_text), inflight=coord.inflight(),
            port=port, feedback=coord.state.feedback.get(str(self.k), ""),
            plateau=coord.plateau(), profile=loop.harness.profile)

    def ask(self, request: AgentRequest) -> tuple[Proposal | None, str]:
        """(the agent's proposal, None and why not when it refused). Its cost is counted."""
        try:
            proposal = self.agent.propose(request)
        except AgentRefused as e:
            self.coord.add_cost(e.usage.cost_usd)
            return None, str(e)
        except AgentError as e:
            self.coord.add_cost(e.usage.cost_usd)
            raise
        self.coord.add_cost(proposal.usage.cost_usd)
        return proposal, ""

    def check(self, parent: str, backup: Path, refs: dict[str, str]) -> tuple[str | None, list]:
        """Undo what the agent did outside train.py; why the edit cannot run, or None. A change
        outside the work trees is held against it only if it could have made it (no run was
        under way since the guard's previous scan)."""
        blame = self.loop.check_guard(backup, self.who)
        result = self.slot.check(parent, backup, refs)
        notes = result.notes + ([f"undid {', '.join(result.undone)} (copies in "
                                 f"{backup.relative_to(self.loop.repo)})"] if result.undone else [])
        if blame.paths:
            return (f"changed {', '.join(blame.paths[:3])} outside its work tree"
                    + ("" if blame.sole else " (it or another agent working at the time)")), notes
        return result.reason, notes

    def reject(self, reason: str, task: Task | None, feedback: str = "") -> None:
        loop = self.loop
        in_a_row = self.coord.reject(self.k, reason, task, feedback)
        self.rejected += 1
        self.last_rejection = reason
        loop.log(f"w{self.k}: proposal rejected: {reason}", "yellow")
        if in_a_row < MAX_REJECTIONS and self.rejected % BACKOFF_EVERY == 0:
            pause = min(BACKOFF_MAX, loop.opts.backoff * 2 ** (self.rejected // BACKOFF_EVERY - 1))
            loop.log(f"w{self.k}: {self.rejected} rejections in a row: pausing {pause:.0f}s")
            loop.sleep(pause)

    # ---- the runner thread

    def run_forever(self) -> None:
        while True:
            # the stop file itself, not only `closing`: the main thread polls it, and a job queued
            # between two of its polls would otherwise start after the user asked for a stop
            if self.loop.closing or self.loop.why_stop():
                return
            job = self.coord.take(self.k, self.loop.opts.max_experiments)
            if job is None:
                if self.loop.drained(self):
                    return
                self.loop.wait(0.5)
                continue
            try:
                self.run(job)
            except BaseException as e:  # noqa: BLE001 (the main thread re-raises it)
                self.loop.fail(e)
                return

    def run(self, job: Job) -> None:
        loop, coord = self.loop, self.coord
        job = coord.start(job, loop.guard.violations)
        spec = RunSpec(job.n, coord.code(job.commit), loop.repo / job.run_dir,
                       loop.opts.train_cmd, loop.timeout, loop.opts.grace, gpu=self.gpu)
        loop.log(f"#{job.n} {job.kind.value} {job.commit[:7]} on w{self.k}: {job.description}")
        loop.live(self.k, phase="training", experiment=job.n, kind=job.kind.value,
                  commit=job.commit[:7], description=job.description, step=None,
                  progress_pct=0.0, remaining_s=None, loss=None)
        self.running = job
        loop.suspects.begin(f"{RUN_LABEL}{job.n}")
        try:
            result = loop.executor.run(spec, on_progress=lambda p: self.progress(p),
                                       should_abort=loop.should_abort)
        finally:
            loop.suspects.end(f"{RUN_LABEL}{job.n}")
            self.running = None
        self.busy_seconds += result.seconds
        if result.aborted:
            loop.log(f"#{job.n} was stopped; the next `run` runs it again", "yellow")
            return
        outcome = self.outcome(job, spec, result)
        if outcome is None:
            coord.requeue(job)
            return
        decision = coord.record(job, outcome)
        loop.live(self.k, phase="idle")
        tidy_weights(loop.repo, decision.rows, coord.rows(), loop.opts.keep_checkpoints,
                     loop.opts.sample_timeout if loop.opts.sample else None,
                     lambda message: loop.log(message, "yellow"), loop.hidden)

    def progress(self, p: Progress) -> None:
        self.loop.live(self.k, step=p.step, progress_pct=p.progress_pct,
                       remaining_s=p.remaining_s, loss=p.loss,
                       phase="evaluating" if p.progress_pct >= 100 else "training")

    def outcome(self, job: Job, spec: RunSpec, result: RunResult) -> Outcome | None:
        """How the run came out; None if it must run again (the harness changed under it, or
        its node was lost)."""
        loop = self.loop
        log = spec.run_dir / "run.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if result.lost and job.lost < LOST_RUNS:
            job.lost += 1
            loop.log(f"#{job.n} was lost ({result.lost}): running it again", "yellow")
            return None
        verdict = read_run(result.returncode, text, result.timed_out)
        if result.lost:  # lost again and again: recorded, never silently dropped
            verdict = replace(verdict, metrics=None, reason=LOST)
        # the profile is the harness's setting, not what train.py printed
        out = Outcome(verdict.metrics, verdict.reason, loop.harness.profile or verdict.profile,
                      result.seconds,
                      result.device or self.device, result.gpu, result.node, log_tail(text),
                      last_error(text))
        tampered = [name for name in FIXED_FILES if text_hash(
            _read(spec.run_dir / name)) != text_hash(spec.files[name])]
        blame = loop.check_guard(tag_dir(loop.repo, self.coord.tag) / "undone" / f"run-{job.n}",
                                 f"{RUN_LABEL}{job.n}")
        if tampered or (blame.paths and (blame.sole or job.lost >= LOST_RUNS)):
            what = ", ".join(tampered + blame.paths[:3])
            loop.log(f"#{job.n} changed {what} while it ran: void", "red")
            out = replace(out, metrics=None, reason=TAMPER, error=f"changed {what}")
        elif blame.paths or job.seen != loop.guard.violations:
            if blame.paths:  # it or another run under way: each runs again, a few times at most
                job.lost += 1
            loop.log(f"#{job.n} ran while the harness was tampered with: running it again",
                     "yellow")
            return None
        write_metrics(spec.run_dir, job, result, out)
        return out


class Unusable(UserError):
    """Too many unusable proposals in a row: the loop stops for a human. Told with the count
    when the loop stops, not when it was raised: proposals under way on other workers then
    finish and may add to it."""

    def __init__(self, coord: Coordinator, last: str):
        super().__init__(last)
        self.coord, self.last = coord, last
        self.in_a_row, self.total = coord.state.rejections, coord.state.rejected_total

    def __str__(self) -> str:
        later = self.coord.state.rejected_total - self.total
        return (f"{self.in_a_row + later} proposals in a row were unusable (last: "
                f"{self.last}); see .autoresearch/{self.coord.tag}/events.log, check the agent "
                f"and program.md, then run again")


def write_metrics(run_dir: Path, job: Job, result: RunResult, out: Outcome) -> None:
    """metrics.json: how the run ended and what it measured, beside its log."""
    (run_dir / "metrics.json").write_text(json.dumps({
        "n": job.n, "kind": job.kind.value, "commit": job.commit, "parent": job.parent,
        "returncode": result.returncode, "timed_out": result.timed_out,
        "seconds": round(result.seconds, 1), "crash_reason": out.reason, "profile": out.profile,
        "worker": job.worker, "gpu": out.gpu, "device": out.device, "node": out.node,
        "summary": out.metrics}, indent=2))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def kill_agent(marker: str) -> list[int]:
    """Kill the process groups of an agent left running (by a loop killed with -9, say)."""
    return kill_marked(AGENT_ENV, marker)

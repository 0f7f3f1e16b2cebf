"""One worker's experiment pipeline: propose -> check -> commit, then run -> parse -> record.

A worker is an agent session with a work tree of its own, and a GPU slot. It has two threads, so
its agent prepares the next proposal while its GPU trains the last one:

    proposer  the agent edits train.py (a target's editable files) in the work tree (a fresh
              experiment on the current best, or a fix / port task for this worker); the loop
              undoes anything but the editable files, rejects what cannot or need not run (no
              change, no compile, a program that ran already) and commits the rest on its
              parent; one proposal waits at most.
    runner    takes the worker's next job (follow-up runs first), runs exactly the committed
              code in a fresh run folder, reads the outcome, and hands it to the coordinator,
              which alone decides and records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from autoresearch.agents import Agent, AgentError, AgentRefused, AgentRequest, Proposal
from autoresearch.artifacts.aftercare import tidy_weights
from autoresearch.config import Harness, Options
from autoresearch.errors import UserError
from autoresearch.execution.executor import Executor, RunSpec
from autoresearch.execution.procs import kill_marked
from autoresearch.ledger.state import tag_dir
from autoresearch.ledger.tags import run_files
from autoresearch.live import LiveBoard
from autoresearch.memory.digest import build_digest
from autoresearch.model import Job, Kind, Port, Task
from autoresearch.outcome import outcome_of
from autoresearch.redact import sanitize
from autoresearch.stops import Stops
from autoresearch.target import TARGET_ENV
from autoresearch.verify.private import without_private
from autoresearch.workspace.git import Git, commit_message
from autoresearch.workspace.guard import RUN_LABEL
from autoresearch.workspace.slots import Slot
from autoresearch.workspace.watch import Watch

if TYPE_CHECKING:
    from autoresearch.ledger.coordinator import Coordinator

HISTORY_ROWS = 30  # recent rows in the agent's request; the digest covers the whole night
MAX_REJECTIONS = 12  # unusable proposals in a row before the loop asks for a human
BACKOFF_EVERY = 3  # a worker pauses after every this many rejections in a row...
BACKOFF_MAX = 900.0  # ...first for --backoff seconds, doubling, up to this
# Set for the agent's processes (CLI agents run in sessions of their own): how a resumed loop
# finds an agent left running by a loop killed with -9.
AGENT_ENV = "AUTORESEARCH_AGENT_RUN"


class Log(Protocol):
    """Where a worker's events go (events.log and the UI), with a style for the UI."""

    def __call__(self, message: str, style: str = "") -> None: ...


@dataclass(frozen=True)
class Kit:
    """Everything a worker uses, handed over by the loop: the loop itself is out of its reach."""

    repo: Path
    opts: Options
    harness: Harness
    timeout: float  # of one run
    command: list[str]  # what runs one experiment, in its run folder (the target's, or train.py)
    hidden: list[Path] | None  # what agent code must not see (execution/sandbox.py)
    git: Git
    coord: Coordinator
    executor: Executor
    watch: Watch  # the shared guard
    stops: Stops  # the loop's stop flags, and the condition to wait on
    log: Log  # events.log and the UI
    live: LiveBoard  # what each worker does now: live.json and the UI
    may_propose: Callable[[], bool]  # whether agents may start new proposals
    drained: Callable[[int, bool], bool]  # (worker, proposing): its runner may leave


class Worker:
    """One worker: an agent with a work tree of its own, and a GPU slot. Its two threads, the
    proposer and the runner, take steps of one shape until the loop closes."""

    def __init__(self, kit: Kit, k: int, agent: Agent, slot: Slot, gpu: str | None,
                 device: str):
        self.kit, self.k, self.agent, self.slot = kit, k, agent, slot
        self.gpu, self.device = gpu, device
        self.coord = kit.coord
        self.rejected = 0  # this worker's rejections in a row (for its back-off)
        self.last_rejection = ""
        self.proposing = False
        self.running: Job | None = None
        self.busy_seconds = 0.0  # time its GPU spent in train.py (the busy fraction)

    # ---- the proposer thread

    def propose_forever(self) -> None:
        self._forever(self._propose_next)

    def run_forever(self) -> None:
        self._forever(self._run_next)

    def _forever(self, step: Callable[[], bool]) -> None:
        """Take steps until one says it is done or the loop closes. An error stops the whole
        loop: the main thread re-raises it."""
        try:
            while not self.kit.stops.closing and step():
                pass
        except BaseException as e:  # noqa: BLE001 (the main thread re-raises it)
            self.kit.stops.fail(e)

    def _propose_next(self) -> bool:
        """One proposal, or a short wait when there is nothing this worker may propose."""
        kit = self.kit
        new_allowed = kit.may_propose()
        task = self.coord.desk.next_task(self.k, new_allowed)
        # past the limit only a port comes: it finishes a counted run, whose row waits on it
        may = new_allowed or (task is not None and not kit.stops.stopping)
        if not may or (task is None and self.has_work()):
            kit.stops.wait(0.5)
        else:
            self.propose(task)
        return True

    def propose(self, task: Task | None) -> None:
        coord, kit = self.coord, self.kit
        kind = task.kind if task else Kind.EXPERIMENT
        parent = task.parent if task and task.kind == Kind.FIX else coord.best()
        seq = coord.desk.reserve(self.k, parent, kind.value, self.marker_for,
                                 kit.opts.max_experiments)
        if seq is None:
            self.kit.stops.wait(0.5)
            return
        marker = self.marker_for(seq)
        backup = tag_dir(kit.repo, coord.tag) / "undone" / f"w{self.k}-{seq}"
        self.proposing = True
        try:
            job = self.propose_on(task, kind, parent, seq, marker, backup)
        finally:
            self.proposing = False
        # Not in a `finally`: a proposal cut short by an error stays journaled, and the next
        # `run` drops it (kills the agent's processes, resets the work tree), as after kill -9.
        coord.desk.end_proposal(self.k, task)
        if job is not None:
            kit.log(f"w{self.k}: {job.id} ready: {job.description}")
        kit.live.agent(self.k, None)
        if coord.desk.rejections()[0] >= MAX_REJECTIONS:
            raise Unusable(coord, self.last_rejection)

    def propose_on(self, task: Task | None, kind: Kind, parent: str, seq: int, marker: str,
                   backup: Path) -> Job | None:
        """One agent turn in the work tree; the queued job, or None if it was rejected."""
        kit, coord = self.kit, self.coord
        self.slot.reset(parent, backup)
        files = kit.git.sources_at(task.commit if kind == Kind.FIX else parent)
        for path, text in files.items():
            (self.slot.path / path).write_text(text)
        refs = kit.git.refs("refs/heads", "refs/tags")
        request = self.request(task, files, seq, marker)
        kit.live.agent(self.k, self.title(task))
        try:
            with kit.watch.suspect(self.who):
                proposal, refusal = self.ask(request)
        except Exception:  # whatever the agent did outside train.py is undone, even so
            self.inspect(parent, backup, refs)
            raise
        reason, notes = self.inspect(parent, backup, refs)
        for note in notes:
            kit.log(f"w{self.k}: {note}", "yellow")
        if proposal is None or reason:
            self.reject(f"the agent gave no usable edit: {refusal}" if proposal is None
                        else reason, task)
            return None
        edited = self.slot.texts()
        known = coord.desk.known_program(edited, parent)
        if known:
            self.reject(f"not run: {known}", task,
                        feedback=f"Your last proposal was not run: {known}. Propose something "
                                 f"different.")
            return None
        description = sanitize(proposal.description) or "(no description)"
        hypothesis = sanitize(proposal.hypothesis)
        commit = kit.git.commit_files(parent, edited, commit_message(
            description, hypothesis, f"{coord.tag}, {kind.value}, worker {self.k}"))
        self.rejected = 0
        return coord.desk.submit(self.k, kind, commit, parent, description, self.agent.name,
                            proposal.usage.cost_usd, hypothesis, task)

    def has_work(self) -> bool:
        """Enough for this worker's GPU for now: one proposal waiting (latency hiding), or with
        --no-prefetch, anything queued, running or being confirmed."""
        if self.kit.opts.prefetch:
            return self.coord.has_ready_proposal(self.k)
        return self.running is not None or \
            self.coord.has_jobs(self.k, self.kit.opts.max_experiments)

    @property
    def who(self) -> str:
        """This worker's agent among the guard's suspects."""
        return f"w{self.k}'s agent"

    def marker_for(self, seq: int) -> str:
        return f"{self.kit.repo.resolve()}#{self.coord.tag}#w{self.k}#{seq}"

    def title(self, task: Task | None) -> str:
        if task is None:
            return "a new experiment"
        return f"{task.kind.value} #{task.subject}: {task.description}"

    def request(self, task: Task | None, files: dict[str, str], seq: int,
                marker: str) -> AgentRequest:
        coord, kit = self.coord, self.kit
        # as it was when the loop started: the guard puts back any write to it, and an agent's
        # write must not reach another's prompt before the next scan does
        program_text = kit.watch.trusted(kit.repo / kit.opts.target.program)
        # agents never see the held-out numbers
        rows, entries = without_private(coord.ledger.rows(), coord.ledger.entries())
        port = None
        if task is not None and task.kind == Kind.PORT:
            port = Port(task.subject, task.worker, task.commit, task.parent, task.description,
                        diff=task.diff, conflict=task.detail)
        return AgentRequest(
            repo=self.slot.path, program=program_text,
            train_py=files[kit.opts.target.edited], files=files,
            history=rows[-HISTORY_ROWS:],
            crash_log=task.detail if task and task.kind == Kind.FIX else None,
            best_val_bpb=coord.ledger.best_value(), noise_threshold=coord.threshold(),
            experiment=seq, worker=self.k, env={AGENT_ENV: marker}, journal=entries,
            digest=build_digest(entries, program_text, metric=kit.opts.target.metric),
            inflight=coord.inflight(), port=port, feedback=coord.desk.feedback(self.k),
            plateau=coord.plateau(), profile=kit.harness.profile, target=kit.opts.target)

    def ask(self, request: AgentRequest) -> tuple[Proposal | None, str]:
        """(the agent's proposal, None and why not when it refused). Its cost is counted."""
        try:
            proposal = self.agent.propose(request)
        except AgentRefused as e:
            self.coord.desk.add_cost(e.usage.cost_usd)
            return None, str(e)
        except AgentError as e:
            self.coord.desk.add_cost(e.usage.cost_usd)
            raise
        self.coord.desk.add_cost(proposal.usage.cost_usd)
        return proposal, ""

    def inspect(self, parent: str, backup: Path,
                refs: dict[str, str]) -> tuple[str | None, list]:
        """Undo what the agent did outside train.py; why the edit cannot run, or None. A change
        outside the work trees is held against it only if it could have made it (no run was
        under way since the guard's previous scan)."""
        blame = self.kit.watch.inspect(backup, self.who)
        result = self.slot.vet(parent, backup, refs)
        notes = result.notes + ([f"undid {', '.join(result.undone)} (copies in "
                                 f"{backup.relative_to(self.kit.repo)})"] if result.undone else [])
        if blame.paths:
            return (f"changed {', '.join(blame.paths[:3])} outside its work tree"
                    + ("" if blame.sole else " (it or another agent working at the time)")), notes
        return result.reason, notes

    def reject(self, reason: str, task: Task | None, feedback: str = "") -> None:
        kit = self.kit
        in_a_row = self.coord.desk.reject(self.k, reason, task, feedback)
        self.rejected += 1
        self.last_rejection = reason
        kit.log(f"w{self.k}: proposal rejected: {reason}", "yellow")
        if in_a_row < MAX_REJECTIONS and self.rejected % BACKOFF_EVERY == 0:
            pause = min(BACKOFF_MAX, kit.opts.backoff * 2 ** (self.rejected // BACKOFF_EVERY - 1))
            kit.log(f"w{self.k}: {self.rejected} rejections in a row: pausing {pause:.0f}s")
            kit.stops.sleep(pause)

    # ---- the runner thread

    def _run_next(self) -> bool:
        """Train the worker's next job, or wait for one; False once the runner may leave."""
        # the stop file itself, not only `closing`: the main thread polls it, and a job queued
        # between two of its polls would otherwise start after the user asked for a stop
        if self.kit.stops.why():
            return False
        job = self.coord.take(self.k, self.kit.opts.max_experiments)
        if job is None:
            if self.kit.drained(self.k, self.proposing):
                return False
            self.kit.stops.wait(0.5)
            return True
        self.train(job)
        return True

    def train(self, job: Job) -> None:
        """Run a job's committed code in its run folder and hand the outcome to the coordinator."""
        kit, coord, target = self.kit, self.coord, self.kit.opts.target
        job = coord.start(job, kit.watch.violations)
        spec = RunSpec(job.n, run_files(kit.git, job.commit, coord.state), kit.repo / job.run_dir,
                       kit.command, kit.timeout, kit.opts.grace, gpu=self.gpu,
                       env={TARGET_ENV: str(kit.repo)} if target.custom else {})
        if target.metric.file:  # an interrupted attempt's file must not pass for this run's
            (spec.run_dir / target.metric.file).unlink(missing_ok=True)
        kit.log(f"#{job.n} {job.kind.value} {job.commit[:7]} on w{self.k}: {job.description}")
        kit.live.training(self.k, job)
        self.running = job
        try:
            with kit.watch.suspect(f"{RUN_LABEL}{job.n}"):
                result = kit.executor.execute(
                    spec, on_progress=lambda p: kit.live.progress(self.k, p),
                    should_abort=kit.stops.should_abort)
        finally:
            self.running = None
        self.busy_seconds += result.seconds
        if result.aborted:
            kit.log(f"#{job.n} was stopped; the next `run` runs it again", "yellow")
            return
        outcome = outcome_of(job, spec, result, self.device, kit.harness.profile, kit.watch,
                             tag_dir(kit.repo, coord.tag) / "undone" / f"run-{job.n}", kit.log,
                             target)
        if outcome is None:
            coord.requeue(job)
            return
        decision = coord.record(job, outcome)
        kit.live.idle(self.k)
        tidy_weights(kit.repo, decision.rows, coord.ledger.rows(), kit.opts.keep_checkpoints,
                     kit.opts.sample_timeout if kit.opts.sample and not target.custom
                     else None,  # samples are the LLM harness's: a target's model is its own
                     lambda message: kit.log(message, "yellow"), kit.hidden)


class Unusable(UserError):
    """Too many unusable proposals in a row: the loop stops for a human. Told with the count
    when the loop stops, not when it was raised: proposals under way on other workers then
    finish and may add to it."""

    def __init__(self, coord: Coordinator, last: str):
        super().__init__(last)
        self.coord, self.last = coord, last
        self.in_a_row, self.total = coord.desk.rejections()

    def __str__(self) -> str:
        later = self.coord.desk.rejections()[1] - self.total
        return (f"{self.in_a_row + later} proposals in a row were unusable (last: "
                f"{self.last}); see .autoresearch/{self.coord.tag}/events.log, check the agent "
                f"and program.md, then run again")


def kill_agent(marker: str) -> list[int]:
    """Kill the process groups of an agent left running (by a loop killed with -9, say)."""
    return kill_marked(AGENT_ENV, marker)

"""The research loop: every worker's GPU busy with experiments until it is told to stop.

The loop on one screen (after karpathy/autoresearch's program.md):

    open the tag (branch autoresearch/<tag> at the current commit), finish what a killed loop left
    run the unmodified code on every worker at once: the baseline, and the noise threshold
    then, on every worker, until stopped:
        its agent edits train.py on the current best, in the worker's own work tree
        the loop checks the edit, commits it, queues it (one proposal waits while the GPU trains)
        its GPU runs the worker's next job: exactly the committed code, in a fresh run folder
        the coordinator decides (screen against the parent, confirm with paired runs, keep,
        discard, port onto a newer best), appends the row to results.tsv, moves the branch

Stops: --max-experiments (queued work is finished), --hours and `stop` (runs under way are
finished), --max-cost, Ctrl-C (once: finish the runs under way; twice, a second or more apart,
SIGTERM or `stop --now`: abort them; they run again on the next `run`). Kill it any way you
like, kill -9 included, and run the same command: the journal in state.json says what to finish.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Protocol

from autoresearch.agents import Agent
from autoresearch.artifacts.checkpoints import RUNS_DIR
from autoresearch.config import Harness, Options
from autoresearch.errors import UserError
from autoresearch.execution import sandbox
from autoresearch.execution.executor import Executor, RunSpec
from autoresearch.execution.gpus import Slot as GpuSlot
from autoresearch.execution.gpus import plan_workers
from autoresearch.execution.local import LocalExecutor
from autoresearch.ledger.coordinator import Coordinator
from autoresearch.ledger.state import (
    STATE_DIR,
    TagLock,
    clear_stop,
    list_tags,
    log_event,
    save_state,
    stop_requested,
    tag_dir,
    write_live,
)
from autoresearch.ledger.tags import open_tag, unrun_edits_note
from autoresearch.model import Phase, Row
from autoresearch.names import RESULTS
from autoresearch.pipeline import Worker, kill_agent
from autoresearch.redact import register_environment
from autoresearch.target import run_setup
from autoresearch.verify.private import (
    CACHE_FILE,
    PRIVATE_DIR,
    Verifier,
    open_verification,
    private_split,
)
from autoresearch.workspace.git import Git
from autoresearch.workspace.guard import (
    Blame,
    Guard,
    Suspects,
    checkout_area,
    culprits,
    data_area,
    data_fingerprint,
    environment_area,
    git_area,
    lost_message,
)
from autoresearch.workspace.slots import TREES, Slot

LIVE_EVERY = 1.0  # seconds between live.json writes for progress updates
# SIGINTs this close together are one Ctrl-C: a signal sent to the whole process group (a
# supervisor, CI) reaches the loop directly and again through a parent that forwards it to its
# child (`uv run` does), a moment apart; a second Ctrl-C meant as one comes later
SAME_SIGINT_S = 1.0


class UI(Protocol):
    def event(self, text: str, style: str = "") -> None: ...
    def update(self, live: dict) -> None: ...
    def outcome(self, row: Row) -> None: ...


class Loop:
    def __init__(self, repo: Path, opts: Options, agents: Agent | list[Agent], ui: UI,
                 executor: Executor | None = None, slots: list[GpuSlot] | None = None):
        self.repo = Path(repo).absolute()  # every path handed to git or a child is made from it
        self.opts = opts
        self.agents = agents
        self.ui = ui
        self.target = opts.target
        self.git = Git(self.repo, self.target.edited)
        self.slots = slots
        self.executor = executor
        self.deadline = time.monotonic() + opts.hours * 3600 if opts.hours else None
        self.stopping = ""  # why the loop is winding down: no new runs start
        self.closing = False  # threads: leave as soon as what is under way is done
        self.aborting = False  # second Ctrl-C / SIGTERM / stop --now: kill the runs now
        self.error: BaseException | None = None  # raised in a worker's thread
        self.wake = threading.Condition()
        self.live_lock = threading.Lock()
        self.guard_lock = threading.Lock()
        self.scanned_at = 0.0  # when the latest guard scan began
        self.suspects = Suspects()  # the agent turns and runs a change may be blamed on
        self.blamed: dict[str, Blame] = {}  # by suspect, until it asks (check_guard)
        self.live_state: dict = {"workers": {}}
        self.live_written = 0.0
        self.workers: list[Worker] = []
        self.hidden: list[Path] | None = None  # what agent code must not see (execution/sandbox.py)

    # ---- the whole session

    def run(self) -> str:
        """Open or resume the tag, finish what a killed loop left, then run; say why it ended."""
        self.git.check_repo()  # before the lock, which would create .autoresearch/ anywhere
        register_environment(os.environ)
        self.harness = Harness.of(self.repo, self.target)
        self.timeout = self.opts.timeout or self.target.timeout or self.harness.timeout()
        self.command = list(self.target.command) or self.opts.train_cmd
        self.preflight()  # before the tag's branch and trees exist: a failure leaves nothing
        with TagLock(self.repo, self.opts.tag), _Signals(self):
            resuming = self.opts.tag in list_tags(self.repo)
            slots = self.slots or plan_workers(self.opts.workers, self.opts.gpus,
                                               self.opts.mixed_gpus, self.target.gpu)
            verifier = self.verifier(slots, not resuming)  # may prepare the private split: before
            # open_tag, which fingerprints the data
            if not resuming and self.target.setup:
                self.log(f"setup (once for the tag): {shlex.join(self.target.setup)}")
                run_setup(self.repo, self.target)
            state = open_tag(self.git, self.opts.tag, data_fingerprint(self.harness.cache_dir),
                             self.target)
            tag = state.tag
            if resuming and self.git.is_dirty(self.git.editable):
                self.log(unrun_edits_note(state, self.git.editable), "yellow")
            self.coord = Coordinator(self.repo, self.git, state, noise_runs=self.opts.noise_runs,
                                     noise_floor=self.opts.noise_floor,
                                     max_pairs=self.opts.max_pairs,
                                     max_fix_attempts=self.opts.max_fix_attempts,
                                     plateau_after=self.opts.plateau_after, log=self.log,
                                     outcome=self.ui.outcome, verifier=verifier,
                                     metric=self.target.metric)
            clear_stop(self.repo, tag)
            self.hidden = [self.harness.cache_dir / PRIVATE_DIR] \
                if private_split(self.harness.cache_dir) and not sandbox.unavailable() else None
            self.executor = self.executor or LocalExecutor({s.gpu: s.device for s in slots},
                                                           hidden=self.hidden)
            agents = self.agents if isinstance(self.agents, list) else [self.agents] * len(slots)
            self.workers = [
                Worker(self, s.worker, agents[s.worker], Slot(self.git, tag_dir(
                    self.repo, tag) / TREES / str(s.worker), s.worker), s.gpu, s.device)
                for s in slots]
            for w in self.workers:
                self.live(w.k, phase="idle", gpu=w.gpu or "", device=w.device)
            self.guard = Guard(self.guard_areas())
            self.guard.arm()
            where = ", ".join(" ".join(filter(None, (f"w{s.worker}", s.gpu and f"gpu {s.gpu}",
                                                      s.device or None))) for s in slots)
            self.log(f"loop started (pid {os.getpid()}; {where}; agent {agents[0].name}; "
                     f"timeout {self.timeout:.0f}s)")
            try:
                self.resume()
                if rebuilt := self.coord.rebuild_journal():
                    self.log(f"journal: wrote the entries of {rebuilt} runs from results.tsv "
                             f"and git", "yellow")
                self.coord.plan_wave(len(self.workers))
                self.say_if_limit_reached()
                reason = self.drive()
            except Exception as e:
                self.wind_down()
                self.log(f"loop stopped: {e}", "red")
                raise
            # (Anything else, e.g. a test's stand-in for kill -9, leaves everything as it is.)
            self.wind_down()
            self.log(f"loop stopped: {reason}", "bold")
            return reason

    def preflight(self) -> None:
        """Each distinct agent checks, cheaply, that it can work (logged in, key accepted)."""
        agents = self.agents if isinstance(self.agents, list) else [self.agents]
        for agent in {id(a): a for a in agents}.values():
            preflight = getattr(agent, "preflight", None)
            if preflight is not None:
                preflight()

    def verifier(self, slots: list[GpuSlot], new_tag: bool) -> Verifier | None:
        """The held-out verifier of this loop, or None when it does not verify (--no-verify,
        no private split, Ray, a target of its own); says which in a start line, except for a
        target of its own, which has no held-out split to speak of."""
        if self.target.custom:
            return None
        if not self.opts.verify:
            self.log("held-out verification off (--no-verify): keeps rest on the public "
                     "validation split alone", "yellow")
            return None
        if not open_verification(self.repo, self.harness.cache_dir, new_tag,
                                 self.executor is not None, self.log):
            return None
        return Verifier(self.repo, tag_dir(self.repo, self.opts.tag) / CACHE_FILE,
                        self.opts.noise_floor, sandbox.unavailable() is None, self.log,
                        {s.worker: s.gpu for s in slots})

    def wind_down(self) -> None:
        self.closing = True
        self.release_agents()
        self.live(None, phase="idle")
        clear_stop(self.repo, self.opts.tag)

    def guard_areas(self) -> list:
        common = Path(self.git.run("rev-parse", "--git-common-dir"))
        # what the loop itself writes is never put back, even where the user tracks it
        ours = (RESULTS, f"{RUNS_DIR}/", f"{STATE_DIR}/")
        tracked = [name for name in self.git.run("ls-files", "-z").split("\0")
                   if name and not name.startswith(ours)]
        areas = [data_area(self.harness.cache_dir),
                 git_area(common if common.is_absolute() else self.repo / common),
                 checkout_area(self.repo, tracked, self.target.program)]
        return ([environment_area()] if self.opts.guard_environment else []) + areas

    def resume(self) -> None:
        """Finish what a killed loop left, as its journal describes."""
        coord, s = self.coord, self.coord.state
        s.rejections = 0  # a human restarted the loop: give the agents a fresh allowance
        for p in list(s.proposing):
            for pgid in kill_agent(p.marker):
                self.log(f"killed agent process group {pgid} left running by an interrupted loop")
            backup = tag_dir(self.repo, s.tag) / "undone" / f"resume-w{p.worker}"
            undone = self.workers[p.worker].slot.reset(p.parent, backup) \
                if p.worker < len(self.workers) else []
            self.log(f"resuming: w{p.worker}'s proposal was interrupted: dropped"
                     + (f" (undid {', '.join(undone)})" if undone else ""), "yellow")
        s.proposing = []
        for task in s.tasks:  # fewer workers than before: move it (a port's row waits on it)
            task.worker %= len(self.workers)
        for job in list(s.jobs):
            if job.worker >= len(self.workers):  # fewer workers than before: move it
                job.worker = job.worker % len(self.workers)
            if job.phase == Phase.RUNNING:
                spec = RunSpec(job.n, {}, self.repo / job.run_dir, [], 0, self.opts.grace)
                for pgid in self.executor.clean_up(spec):
                    self.log(f"killed process group {pgid} left running by an interrupted loop")
                self.log(f"resuming: run #{job.n} ({job.kind.value}) was interrupted: running "
                         f"it again", "yellow")
                job.phase = Phase.READY
            elif job.phase == Phase.RECORDING:
                self.log(f"resuming: finishing the record of run #{job.n}", "yellow")
                coord.finish(job)
        save_state(self.repo, s)
        for n in coord.fresh_controls():
            self.log(f"resuming: #{n}'s control ran before the restart: its parent runs again "
                     f"beside its confirmation", "yellow")

    def say_if_limit_reached(self) -> None:
        """Say at once when --max-experiments is reached before anything starts: no new idea
        starts, queued ones included (what was counted still finishes)."""
        limit, done = self.opts.max_experiments, self.coord.agent_runs(queued=False)
        if limit is None or done < limit:
            return
        held = len(self.coord.held_back(limit))
        queued = f"; {held} queued proposal{'s' * (held != 1)} wait{'s' * (held == 1)} for a " \
                 f"run with a higher limit" if held else ""
        self.log(f"--max-experiments {limit} is reached already ({done} experiments): nothing "
                 f"new starts{queued}", "bold yellow")

    def drive(self) -> str:
        """Run every worker's two threads until a stop; say why it ended."""
        if why := self.why_stop():
            return why
        threads = []
        for w in self.workers:
            threads.append(threading.Thread(target=w.run_forever, name=f"run-w{w.k}", daemon=True))
            threads.append(threading.Thread(target=w.propose_forever, name=f"agent-w{w.k}",
                                            daemon=True))
        for thread in threads:
            thread.start()
        runners, proposers = threads[::2], threads[1::2]
        while any(t.is_alive() for t in runners):
            why = self.why_stop()
            if why and not self.stopping:
                self.stopping = why
                self.closing = True
                self.log(f"stopping: {why}; waiting for the runs under way", "bold yellow")
                self.notify()
            for t in runners:
                t.join(timeout=0.2)
        if not self.stopping and (why := self.why_stop()):  # the runners saw it first
            self.stopping = why
        self.closing = True
        self.notify()
        for t in proposers:  # they leave at their next step; an agent call under way is not
            t.join(timeout=1.0)  # waited for (its processes are killed on the way out)
        if self.error is not None:
            raise self.error
        if self.aborting:
            return "aborted: the runs under way run again on the next `run`"
        if self.stopping:
            return self.stopping
        if self.opts.max_experiments is not None:
            return f"reached --max-experiments {self.opts.max_experiments}"
        return "nothing left to do"

    def why_stop(self) -> str | None:
        if self.error is not None:  # its reason now: the runs under way may take minutes
            return str(self.error) if isinstance(self.error, UserError) else "error"
        if self.aborting:
            return "aborted"
        if stop_requested(self.repo, self.opts.tag) == "now":
            self.aborting = True
            return "stop --now requested"
        if stop_requested(self.repo, self.opts.tag):
            return "stop requested"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return f"reached --hours {self.opts.hours:g}"
        return None

    def may_propose(self) -> bool:
        """Whether agents may start new proposals (runs of what is queued go on regardless)."""
        s = self.coord.state
        if self.closing or self.stopping:
            return False
        if self.opts.max_cost is not None and s.cost_usd >= self.opts.max_cost:
            if not self.stopping:
                self.log(f"reached --max-cost ${self.opts.max_cost:g} (spent ${s.cost_usd:.2f}):"
                         f" no new proposals", "bold yellow")
                self.stopping = f"reached --max-cost ${self.opts.max_cost:g}"
            return False
        if self.opts.max_cost is not None and s.cost_unknown:
            self.fail(UserError("an agent call did not report its cost, so --max-cost cannot "
                                "be enforced: pass --price-in/--price-out or drop --max-cost"))
            return False
        return self.opts.max_experiments is None or \
            self.coord.agent_runs() < self.opts.max_experiments

    def drained(self, worker: Worker) -> bool:
        """A runner may leave: nothing queued for it and nothing more can come."""
        if self.closing:
            return True
        if self.coord.state.noise is None or worker.proposing:
            return False
        new_allowed = self.may_propose()
        if self.coord.next_task(worker.k, new_allowed) is not None:
            return False
        if self.coord.has_jobs(worker.k, self.opts.max_experiments):
            return False
        return not new_allowed

    def should_abort(self) -> bool:
        return self.aborting or stop_requested(self.repo, self.opts.tag) == "now"

    def fail(self, error: BaseException) -> None:
        """A thread hit an error the loop cannot continue past: stop everything; the main
        thread raises it (a UserError as one line, anything else with its traceback)."""
        if self.error is None:
            self.error = error
        self.closing = True
        self.notify()

    def release_agents(self) -> None:
        """Kill the processes of proposals under way (the next `run` drops the proposals)."""
        for p in list(self.coord.state.proposing):
            kill_agent(p.marker)

    # ---- small helpers for the workers

    def check_guard(self, backup: Path, who: str) -> Blame:
        """Undo changes to the guarded areas and blame them on whoever could have made them
        (guard.culprits); what is blamed on `who` (`who` is a suspect: "run #7", "w1's agent").
        Changes that cannot be undone stop the loop.

        Workers that ask while another's scan runs share the next one: a scan that began after
        a worker asked sees everything its step did, and whoever's scan finds a change blames it
        on the suspects of that scan, so a shared scan blames no step less."""
        asked = time.monotonic()
        with self.guard_lock:
            if self.scanned_at <= asked:
                self.scan_guard(backup, who)
            return self.blamed.pop(who, Blame())

    def scan_guard(self, backup: Path, who: str) -> None:
        started = time.monotonic()
        suspects = self.suspects.take()
        changes = self.guard.check()
        suspects |= self.suspects.now()
        self.scanned_at = started
        if changes and self.coord.state.noise is None and all(
                self.guard.is_derived(c) for c in changes):
            # only the first wave, the unmodified code, may write the harness's caches
            self.guard.accept(changes)
            return
        if not changes:
            return
        undone, lost = self.guard.undo(changes, backup)
        blamed = culprits(suspects or {who})
        for culprit in blamed:
            self.blamed.setdefault(culprit, Blame()).add([str(c.path) for c in changes],
                                                          sole=len(blamed) == 1)
        self.log(f"{' or '.join(sorted(blamed))} (found by {who}): changed "
                 f"{', '.join(map(str, changes[:5]))} outside {self.git.editable}; undone: "
                 f"{', '.join(undone) or 'nothing'} (what was found is in {backup})", "red")
        if lost:
            raise UserError(lost_message(lost))

    def wait(self, seconds: float) -> None:
        with self.coord.changed:
            self.coord.changed.wait(seconds)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.closing:
            self.wait(min(0.5, end - time.monotonic()))

    def notify(self) -> None:
        with self.coord.changed:
            self.coord.changed.notify_all()

    def log(self, message: str, style: str = "") -> None:
        log_event(self.repo, self.opts.tag, message)
        self.ui.event(message, style)

    def live(self, worker: int | None, **values: object) -> None:
        """Update what worker `worker` is doing now (None: the loop as a whole)."""
        with self.live_lock:
            state = self.live_state
            if worker is not None:
                state["workers"].setdefault(str(worker), {}).update(values, worker=worker)
                state.update(values)  # the latest change also reads as the loop's (one worker)
            else:
                state.update(values)
                for w in state["workers"].values():
                    w.update(values)
            s = self.coord.state if hasattr(self, "coord") else None
            state.update(tag=self.opts.tag, agent=getattr(self.workers[0].agent, "name", "")
                         if self.workers else "",
                         best_commit=(s.best_commit or "")[:7] if s else "",
                         best_val_bpb=self.coord.best_value() if s and s.best_commit
                         else None,
                         threshold=self.coord.threshold() if s else None,
                         time_left_s=max(0.0, self.deadline - time.monotonic())
                         if self.deadline else None,
                         stopping=bool(self.stopping),
                         queued=sum(j.phase == Phase.READY for j in s.jobs) if s else 0,
                         confirming=len(s.candidates) if s else 0)
            snapshot = dict(state, workers={k: dict(v) for k, v in state["workers"].items()})
            now = time.monotonic()
            # Only a progress line (it has a step) may wait for the next write. A run's start
            # resets step to None and must be written at once: skipped, live.json read "idle"
            # until train.py's first line, and status called a live loop "not running".
            if values.get("step") is None or now - self.live_written >= LIVE_EVERY:
                self.live_written = now
                write_live(self.repo, self.opts.tag, snapshot)
        self.ui.update(snapshot)


class _Signals:
    """Ctrl-C once: finish the runs under way, start no new ones. Twice (or SIGTERM/SIGHUP):
    abort them now. Handlers only set flags (printing from a handler can deadlock)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, loop: Loop):
        self.loop = loop
        self.previous = {}
        self.counted_at = float("-inf")  # when the latest SIGINT that counted arrived

    def handle(self, signum: int, frame: object) -> None:
        loop = self.loop
        if signum == signal.SIGINT:
            now = time.monotonic()
            if now - self.counted_at < SAME_SIGINT_S:
                return  # the same Ctrl-C again, through a parent that forwards it
            self.counted_at = now
            if not loop.stopping:
                loop.stopping = "stop requested (Ctrl-C)"
                loop.closing = True
                return
        loop.aborting = True
        loop.closing = True

    def __enter__(self) -> _Signals:
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

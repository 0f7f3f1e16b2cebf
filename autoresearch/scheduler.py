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
import threading
from pathlib import Path
from typing import Protocol

from autoresearch.agents import Agent
from autoresearch.artifacts.checkpoints import RUNS_DIR
from autoresearch.config import Harness, Options
from autoresearch.errors import UserError
from autoresearch.execution import sandbox
from autoresearch.execution.executor import Executor
from autoresearch.execution.gpus import Slot as GpuSlot
from autoresearch.execution.gpus import plan_workers
from autoresearch.execution.local import LocalExecutor
from autoresearch.ledger.coordinator import Coordinator
from autoresearch.ledger.state import (
    STATE_DIR,
    State,
    TagLock,
    clear_stop,
    list_tags,
    log_event,
    tag_dir,
)
from autoresearch.ledger.tags import open_tag, unrun_edits_note
from autoresearch.live import LiveBoard
from autoresearch.model import Row
from autoresearch.names import RESULTS
from autoresearch.pipeline import Kit, Worker, kill_agent
from autoresearch.policy import Rule
from autoresearch.recovery import resume
from autoresearch.redact import register_environment
from autoresearch.stops import Signals, Stops
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
    Guard,
    checkout_area,
    data_area,
    data_fingerprint,
    environment_area,
    git_area,
)
from autoresearch.workspace.slots import TREES, Slot
from autoresearch.workspace.watch import Watch


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
        self.git = Git(self.repo, self.target.editable)
        self.slots = slots
        self.executor = executor  # None: a local one, made when the GPUs are known
        self.stops = Stops(self.repo, opts.tag, opts.hours)
        self.kit: Kit | None = None  # what the workers use: made by run(), once the tag is open
        self.workers: list[Worker] = []

    @property
    def stopping(self) -> str:
        return self.stops.stopping

    @property
    def error(self) -> BaseException | None:
        return self.stops.error

    # ---- the whole session

    def run(self) -> str:
        """Open or resume the tag, finish what a killed loop left, then run; say why it ended."""
        self.git.check_repo()  # before the lock, which would create .autoresearch/ anywhere
        register_environment(os.environ)
        harness = Harness.of(self.repo, self.target)
        self.preflight()  # before the tag's branch and trees exist: a failure leaves nothing
        with TagLock(self.repo, self.opts.tag), Signals(self.stops):
            resuming = self.opts.tag in list_tags(self.repo)
            slots = self.slots or plan_workers(self.opts.workers, self.opts.gpus,
                                               self.opts.mixed_gpus, self.target.gpu)
            verifier = self.verifier(harness, slots, not resuming)  # may prepare the private
            # split: before open_tag, which fingerprints the data
            if not resuming and self.target.setup:
                self.log(f"setup (once for the tag): {shlex.join(self.target.setup)}")
                run_setup(self.repo, self.target)
            state = open_tag(self.git, self.opts.tag, data_fingerprint(harness.cache_dir),
                             self.target)
            if resuming and self.git.is_dirty(*self.git.files):
                self.log(unrun_edits_note(state, self.git.editable), "yellow")
            clear_stop(self.repo, state.tag)
            kit = self.kit = self.assemble(harness, state, slots, verifier)
            agents = self.agents if isinstance(self.agents, list) else [self.agents] * len(slots)
            self.workers = [
                Worker(kit, s.worker, agents[s.worker], Slot(self.git, tag_dir(
                    self.repo, state.tag) / TREES / str(s.worker), s.worker), s.gpu, s.device)
                for s in slots]
            for w in self.workers:
                kit.live.join(w.k, w.gpu or "", w.device)
            where = ", ".join(" ".join(filter(None, (f"w{s.worker}", s.gpu and f"gpu {s.gpu}",
                                                      s.device or None))) for s in slots)
            self.log(f"loop started (pid {os.getpid()}; {where}; agent {agents[0].name}; "
                     f"timeout {kit.timeout:.0f}s)")
            try:
                resume(kit, self.workers, self.log)
                if rebuilt := kit.coord.ledger.rebuild_journal():
                    self.log(f"journal: wrote the entries of {rebuilt} runs from results.tsv "
                             f"and git", "yellow")
                kit.coord.plan_wave(len(self.workers))
                self.say_if_limit_reached(kit.coord)
                reason = self.drive()
            except Exception as e:
                self.wind_down(kit)
                self.log(f"loop stopped: {e}", "red")
                raise
            # (Anything else, e.g. a test's stand-in for kill -9, leaves everything as it is.)
            self.wind_down(kit)
            self.log(f"loop stopped: {reason}", "bold")
            return reason

    def assemble(self, harness: Harness, state: State, slots: list[GpuSlot],
                 verifier: Verifier | None) -> Kit:
        """The loop's collaborators, made in one place: the coordinator, the executor, the
        shared guard (armed now) and the live board, handed to the workers as one Kit."""
        opts = self.opts
        rule = Rule(alpha=opts.alpha, max_pairs=opts.max_pairs, floor=opts.noise_floor,
                    controls=opts.controls, drift_std=opts.drift_std)
        coord = Coordinator(self.repo, self.git, state, noise_runs=opts.noise_runs, rule=rule,
                            metric=self.target.metric,
                            max_fix_attempts=opts.max_fix_attempts,
                            plateau_after=opts.plateau_after, log=self.log,
                            outcome=self.ui.outcome, verifier=verifier,
                            changed=self.stops.changed)
        hidden = [harness.cache_dir / PRIVATE_DIR] \
            if private_split(harness.cache_dir) and not sandbox.unavailable() else None
        executor = self.executor or LocalExecutor({s.gpu: s.device for s in slots}, hidden=hidden)
        guard = Guard(self.guard_areas(harness))
        guard.arm()
        agent = self.agents[0] if isinstance(self.agents, list) else self.agents
        board = LiveBoard(self.repo, state.tag, getattr(agent, "name", ""), coord, self.stops,
                          self.ui.update)
        timeout = opts.timeout or self.target.timeout or harness.timeout()
        command = list(self.target.command) or opts.train_cmd
        watch = Watch(guard, coord.measuring_noise, self.log, self.git.editable)
        return Kit(self.repo, opts, harness, timeout, command, hidden, self.git, coord, executor,
                   watch, self.stops, self.log, board, self.may_propose, self.drained)

    def preflight(self) -> None:
        """Each distinct agent checks, cheaply, that it can work (logged in, key accepted)."""
        agents = self.agents if isinstance(self.agents, list) else [self.agents]
        for agent in {id(a): a for a in agents}.values():
            preflight = getattr(agent, "preflight", None)
            if preflight is not None:
                preflight()

    def verifier(self, harness: Harness, slots: list[GpuSlot],
                 new_tag: bool) -> Verifier | None:
        """The held-out verifier of this loop, or None when it does not verify (--no-verify,
        no private split, Ray, a target of its own); says which in a start line, except for a
        target of its own, which has no held-out split to speak of."""
        if self.target.custom:
            return None
        if not self.opts.verify:
            self.log("held-out verification off (--no-verify): keeps rest on the public "
                     "validation split alone", "yellow")
            return None
        if not open_verification(self.repo, harness.cache_dir, new_tag,
                                 self.executor is not None, self.log):
            return None
        return Verifier(self.repo, tag_dir(self.repo, self.opts.tag) / CACHE_FILE,
                        self.opts.noise_floor, sandbox.unavailable() is None, self.log,
                        {s.worker: s.gpu for s in slots})

    def wind_down(self, kit: Kit) -> None:
        self.stops.closing = True
        for marker in kit.coord.desk.markers():  # the next `run` drops these proposals
            kill_agent(marker)
        kit.live.all_idle()
        clear_stop(self.repo, self.opts.tag)

    def guard_areas(self, harness: Harness) -> list:
        common = Path(self.git.run("rev-parse", "--git-common-dir"))
        # what the loop itself writes is never put back, even where the user tracks it
        ours = (RESULTS, f"{RUNS_DIR}/", f"{STATE_DIR}/")
        tracked = [name for name in self.git.run("ls-files", "-z").split("\0")
                   if name and not name.startswith(ours)]
        areas = [data_area(harness.cache_dir),
                 git_area(common if common.is_absolute() else self.repo / common),
                 checkout_area(self.repo, tracked, self.target.program)]
        return ([environment_area()] if self.opts.guard_environment else []) + areas

    def say_if_limit_reached(self, coord: Coordinator) -> None:
        """Say at once when --max-experiments is reached before anything starts: no new idea
        starts, queued ones included (what was counted still finishes)."""
        limit, done = self.opts.max_experiments, coord.agent_runs(queued=False)
        if limit is None or done < limit:
            return
        held = len(coord.held_back(limit))
        queued = f"; {held} queued proposal{'s' * (held != 1)} wait{'s' * (held == 1)} for a " \
                 f"run with a higher limit" if held else ""
        self.log(f"--max-experiments {limit} is reached already ({done} experiments): nothing "
                 f"new starts{queued}", "bold yellow")

    def drive(self) -> str:
        """Run every worker's two threads until a stop; say why it ended."""
        stops = self.stops
        if why := stops.why():
            return why
        runners = [threading.Thread(target=w.run_forever, name=f"run-w{w.k}", daemon=True)
                   for w in self.workers]
        proposers = [threading.Thread(target=w.propose_forever, name=f"agent-w{w.k}",
                                      daemon=True) for w in self.workers]
        for thread in runners + proposers:
            thread.start()
        while any(t.is_alive() for t in runners):
            why = stops.why()
            if why and not stops.stopping:
                stops.wind_down(why)
                self.log(f"stopping: {why}; waiting for the runs under way", "bold yellow")
            for t in runners:
                t.join(timeout=0.2)
        if not stops.stopping and (why := stops.why()):  # the runners saw it first
            stops.stopping = why
        stops.close()
        for t in proposers:  # they leave at their next step; an agent call under way is not
            t.join(timeout=1.0)  # waited for (its processes are killed on the way out)
        if stops.error is not None:
            raise stops.error
        if stops.aborting:
            return "aborted: the runs under way run again on the next `run`"
        if stops.stopping:
            return stops.stopping
        if self.opts.max_experiments is not None:
            return f"reached --max-experiments {self.opts.max_experiments}"
        return "nothing left to do"

    def may_propose(self) -> bool:
        """Whether agents may start new proposals (runs of what is queued go on regardless)."""
        stops, opts, coord = self.stops, self.opts, self.kit.coord
        if stops.closing or stops.stopping:
            return False
        spent, unknown = coord.desk.spent()
        if opts.max_cost is not None and spent >= opts.max_cost:
            if not stops.stopping:
                self.log(f"reached --max-cost ${opts.max_cost:g} (spent ${spent:.2f}): no new "
                         f"proposals", "bold yellow")
                stops.stopping = f"reached --max-cost ${opts.max_cost:g}"
            return False
        if opts.max_cost is not None and unknown:
            stops.fail(UserError("an agent call did not report its cost, so --max-cost cannot "
                                 "be enforced: pass --price-in/--price-out or drop --max-cost"))
            return False
        return opts.max_experiments is None or coord.agent_runs() < opts.max_experiments

    def drained(self, worker: int, proposing: bool) -> bool:
        """A runner may leave: nothing queued for it and nothing more can come."""
        coord = self.kit.coord
        if self.stops.closing:
            return True
        if coord.measuring_noise() or proposing:
            return False
        new_allowed = self.may_propose()
        if coord.desk.next_task(worker, new_allowed) is not None:
            return False
        if coord.has_jobs(worker, self.opts.max_experiments) or \
                coord.may_cross(self.opts.max_experiments):
            return False
        return not new_allowed

    def log(self, message: str, style: str = "") -> None:
        log_event(self.repo, self.opts.tag, message)
        self.ui.event(message, style)

"""The research loop: the agent proposes an edit to train.py; this code does everything else.

One experiment, always in this order:
  propose -> check the edit -> commit -> run -> parse -> decide -> record -> move git
Before each step the journal (state.json's `inflight`) says which step is under way, so a loop
killed at any moment (kill -9 included) is finished by the next `run`: a proposal not yet
committed is dropped, a committed or interrupted run is run again, a decision not yet fully
recorded is completed. results.tsv is written BEFORE git moves, and rows are keyed by run number,
so nothing is lost or written twice.

Kinds of runs (results.tsv `kind`): baseline (the unmodified code), noise (the baseline again, to
measure the run-to-run spread), experiment (an agent's edit), confirm (a grey-zone gain run a
second time), fix (the agent repairing its own crashed experiment). Each run has its own number
n: runs/<n>-<commit7>/ and refs/autoresearch/<tag>/tried/<n>.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from autoresearch.agents import Agent, AgentError, AgentRefused, AgentRequest, Usage
from autoresearch.artifacts.aftercare import SAMPLE_TIMEOUT, tidy_weights
from autoresearch.artifacts.checkpoints import RUNS_DIR
from autoresearch.errors import UserError
from autoresearch.execution.local import default_train_cmd, kill_stale_runs, run_training
from autoresearch.execution.parse import FIXABLE_REASONS, Progress, RunVerdict, log_tail, read_run
from autoresearch.execution.procs import GRACE_SECONDS, kill_marked
from autoresearch.ledger.results import Row, append_result, read_results, sanitize
from autoresearch.ledger.state import (
    RepoLock,
    State,
    clear_stop,
    log_event,
    now_iso,
    save_state,
    stop_requested,
    tag_dir,
    write_live,
)
from autoresearch.policy import DEFAULT_FLOOR, confirmed, judge, measure
from autoresearch.workspace.git import TRAIN, Git
from autoresearch.workspace.proposal import Snapshot, check_edit, take_snapshot, undo_side_effects
from autoresearch.workspace.tags import (
    RESULTS,
    check_fixed_files,
    moved_by_loop,
    open_tag,
    tried_ref,
)

PROGRAM = "program.md"
MAX_REJECTIONS = 12  # unusable proposals in a row before the loop gives up and asks for a human
BACKOFF_EVERY = 3  # pause after every this many rejections in a row...
BACKOFF_SECONDS = 60.0  # ...first for this long, doubling each time...
BACKOFF_MAX = 900.0  # ...up to this
DEFAULT_TIME_BUDGET = 300  # if constants.py cannot tell
TIMEOUT_MARGIN = 120.0  # on top of 2 x TIME_BUDGET: start-up, compilation and the final eval
# Set while the agent works, inherited by any process it starts (a CLI agent runs in its own
# session): how a resumed loop finds an agent left running by a loop killed with -9.
AGENT_ENV = "AUTORESEARCH_AGENT_RUN"


class Aborted(Exception):
    """Second Ctrl-C, SIGTERM or `stop --now`: the experiment under way is dropped, not recorded.

    Its journal entry stays, so the next `run` runs it again from the start.
    """


class UI(Protocol):
    def event(self, text: str, style: str = "") -> None: ...
    def update(self, live: dict) -> None: ...
    def outcome(self, row: Row) -> None: ...


@dataclass
class Options:
    tag: str
    noise_runs: int = 2
    noise_floor: float = DEFAULT_FLOOR
    timeout: float | None = None  # None: 2 x TIME_BUDGET + TIMEOUT_MARGIN
    max_experiments: int | None = None  # agent experiments (and fixes) for the whole tag
    hours: float | None = None  # wall clock of this invocation
    max_cost: float | None = None  # USD of agent spend for the whole tag
    max_fix_attempts: int = 2
    keep_checkpoints: int = 3
    train_cmd: list[str] = field(default_factory=default_train_cmd)
    grace: float = GRACE_SECONDS
    backoff: float = BACKOFF_SECONDS
    sample: bool = True  # write sample_output.txt for each kept run
    sample_timeout: float = SAMPLE_TIMEOUT


def new_best(commit: str, values: list[float]) -> dict:
    """State updates for a commit that becomes the best: its score is the mean of its runs."""
    return {"best_commit": commit, "best_val_bpb": statistics.fmean(values), "best_runs": values,
            "fix": None}


def default_timeout(repo: Path) -> float:
    """2 x the profile's TIME_BUDGET + a margin, read from the repo's constants.py."""
    try:
        budget = runpy.run_path(str(repo / "constants.py"))["TIME_BUDGET"]
    except SystemExit as e:  # constants.py rejects a bad AUTORESEARCH_PROFILE this way
        raise UserError(str(e.code)) from None
    except Exception:
        budget = DEFAULT_TIME_BUDGET
    return 2 * float(budget) + TIMEOUT_MARGIN


class Loop:
    def __init__(self, repo: Path, opts: Options, agent: Agent, ui: UI):
        self.repo = Path(repo)
        self.opts = opts
        self.agent = agent
        self.ui = ui
        self.git = Git(self.repo)
        self.state: State | None = None
        self.timeout = opts.timeout or default_timeout(self.repo)
        self.deadline = time.monotonic() + opts.hours * 3600 if opts.hours else None
        self.phase = "idle"  # "agent" while propose() runs: the only time Ctrl-C may interrupt
        self.stopping = False  # first Ctrl-C: finish the experiment under way, then exit
        self.aborting = False  # second Ctrl-C / SIGTERM: kill the run now, record nothing
        self.live_fields: dict = {}

    # ---- the whole session

    def run(self) -> str:
        """Open or resume the tag, finish what a killed loop left, then loop; say why it ended."""
        self.git.check_repo()  # before the lock, which would create .autoresearch/ anywhere
        with RepoLock(self.repo), self._signals():
            self.state = open_tag(self.git, self.opts.tag)
            clear_stop(self.repo, self.opts.tag)
            self.log(f"loop started (pid {os.getpid()}, agent {self.agent.name}, "
                     f"timeout {self.timeout:.0f}s)")
            try:
                self.resume()
                check_fixed_files(self.repo, self.state)
                reason = self.forever()
            except Aborted as e:
                reason = f"aborted: {e}"
            except UserError as e:
                self.log(f"loop stopped: {e}", style="red")
                raise
            finally:
                self.live(phase="idle", step=None, progress_pct=None, remaining_s=None, loss=None)
                clear_stop(self.repo, self.opts.tag)
            self.log(f"loop stopped: {reason}", style="bold")
            return reason

    def forever(self) -> str:
        while True:
            why = self.why_stop()
            if why:
                return why
            s = self.state
            if s.best_commit is None:
                self.start_job("baseline", s.base_commit, "baseline")
            elif s.noise is None:
                self.measure_noise()
            elif self.opts.max_experiments is not None and \
                    self.experiments_done() >= self.opts.max_experiments:
                return f"reached --max-experiments {self.opts.max_experiments}"
            else:
                self.experiment()

    def why_stop(self) -> str | None:
        self.announce_stop()
        if self.aborting:
            return "aborted"
        if self.stopping or stop_requested(self.repo, self.opts.tag):
            return "stop requested"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return f"reached --hours {self.opts.hours:g}"
        if self.opts.max_cost is not None and self.state.cost_usd >= self.opts.max_cost:
            return f"reached --max-cost ${self.opts.max_cost:g} (spent ${self.state.cost_usd:.2f})"
        return None

    def resume(self) -> None:
        """Finish the step a killed loop was in, as its journal describes."""
        s = self.state
        s.rejections = 0  # a human restarted the loop: give the agent a fresh allowance
        job = s.inflight
        if job is None:
            return
        self.log(f"resuming: run #{job['n']} ({job['kind']}) was interrupted while "
                 f"{job['phase']}", style="yellow")
        if job["phase"] == "proposing":
            self.drop_proposal()
        elif job["phase"] == "committing":
            head = self.git.head()
            if moved_by_loop(self.git, s, head):  # the commit was made before the loop died
                self.execute(dict(job, commit=head))
            else:
                self.drop_proposal()
        elif job["phase"] == "running":
            self.execute(job)
        else:
            self.finish(job)

    # ---- baseline and noise

    def measure_noise(self) -> None:
        """Re-run the baseline until --noise-runs are done, then fix the keep threshold."""
        s = self.state
        done = [r for r in self.tag_rows() if r.kind == "noise"]
        if len(done) < self.opts.noise_runs:
            k = len(done) + 1
            self.start_job("noise", s.best_commit,
                           f"noise run {k}/{self.opts.noise_runs}: baseline again")
            return
        values = [r.val_bpb for r in self.tag_rows()
                  if r.kind in ("baseline", "noise") and not r.is_crash]
        s.noise = measure(values, self.opts.noise_floor, self.opts.noise_runs)
        s.best_val_bpb, s.best_runs = statistics.fmean(values), values
        save_state(self.repo, s)
        self.log(f"noise threshold {s.noise['threshold']:.6f} ({s.noise['rule']}; baseline "
                 f"runs {', '.join(f'{v:.6f}' for v in values)}); best {s.best_val_bpb:.6f}",
                 style="cyan")

    def start_job(self, kind: str, commit: str, description: str) -> None:
        self.execute({"n": self.state.next_n, "kind": kind, "commit": commit,
                      "parent": self.state.best_commit or commit, "description": description,
                      "agent": "", "cost_usd": None})

    # ---- one experiment

    def experiment(self) -> None:
        s = self.state
        fix = s.fix
        kind = "fix" if fix else "experiment"
        n = s.next_n
        snap = take_snapshot(self.git)
        s.inflight = {"phase": "proposing", "n": n, "kind": kind, "parent": s.best_commit,
                      "dirty": snap.dirty}
        save_state(self.repo, s)
        if fix:  # the agent repairs the crashed code, so that is what it gets to edit
            snap.train_py = self.git.file_at(fix["commit"])
            (self.repo / TRAIN).write_text(snap.train_py)
        program = self.repo / PROGRAM  # re-read every time: the human steers through it
        request = AgentRequest(
            repo=self.repo, program=program.read_text() if program.is_file() else "",
            train_py=snap.train_py, history=self.tag_rows(),
            crash_log=fix["log_tail"] if fix else None, best_val_bpb=s.best_val_bpb,
            noise_threshold=s.noise["threshold"], experiment=n)
        title = f"fixing #{fix['n']} ({fix['reason']})" if fix else "waiting for the agent"
        self.live(experiment=n, kind=kind, commit="", description=title, phase="agent",
                  step=None, progress_pct=None, remaining_s=None, started_at=now_iso())
        self.phase = "agent"
        os.environ[AGENT_ENV] = self.agent_marker(n)
        try:
            proposal = self.agent.propose(request)
        except AgentRefused as e:
            self.phase = "idle"
            self.add_cost(e.usage)
            self.reject(f"agent gave no usable edit: {e}")
            return
        except AgentError as e:
            self.phase = "idle"
            self.add_cost(e.usage)
            self.drop_proposal()
            raise
        except KeyboardInterrupt:
            self.phase = "idle"
            self.drop_proposal()
            raise Aborted("interrupted while the agent was working") from None
        finally:
            os.environ.pop(AGENT_ENV, None)
        self.phase = "idle"
        self.add_cost(proposal.usage)
        backup = self.undone_dir(n)
        reason, notes = check_edit(self.git, s.branch, snap, backup)
        for note in notes:
            self.log(f"#{n}: {note}", style="yellow")
        if reason:
            self.reject(reason + self.copies_note(backup))
            return
        description = sanitize(proposal.description) or "(no description)"
        s.inflight = {"phase": "committing", "n": n, "kind": kind, "parent": s.best_commit,
                      "dirty": snap.dirty, "description": description, "agent": self.agent.name,
                      "cost_usd": proposal.usage.cost_usd,
                      "fix_attempt": fix["attempts"] + 1 if fix else 0}
        save_state(self.repo, s)
        commit = self.git.commit_train(f"{description}\n\nautoresearch {s.tag} #{n} ({kind})")
        self.execute(dict(s.inflight, commit=commit))

    def undone_dir(self, n: int) -> Path:
        """A fresh directory name for copies of the files the loop is about to restore or remove
        after an agent's turn: it cannot tell the agent's changes from a human's."""
        root = tag_dir(self.repo, self.opts.tag) / "undone"
        path, k = root / f"{n:04d}", 1
        while path.exists():
            k += 1
            path = root / f"{n:04d}-{k}"
        return path

    def copies_note(self, backup: Path) -> str:
        return f" (copies in {backup.relative_to(self.repo)}/)" if backup.is_dir() else ""

    def agent_marker(self, n: int) -> str:
        return f"{self.repo.resolve()}#{self.opts.tag}#{n}"

    def drop_proposal(self) -> None:
        """Put the work tree back as it was before the agent ran; clear the journal."""
        s = self.state
        job = s.inflight
        for pgid in kill_marked(AGENT_ENV, self.agent_marker(job["n"])):
            self.log(f"killed agent process group {pgid} left running by an interrupted loop")
        backup = self.undone_dir(job["n"])
        undone, _ = undo_side_effects(self.git, s.branch, Snapshot(job["parent"], job["dirty"], ""),
                                      backup)
        self.git.restore(TRAIN)
        if undone:
            self.log(f"#{job['n']}: undid {', '.join(undone)}{self.copies_note(backup)}",
                     style="yellow")
        s.inflight = None
        save_state(self.repo, s)

    def reject(self, reason: str) -> None:
        """An unusable proposal: undo it, log it (no results row), back off if it keeps on."""
        s = self.state
        n, kind = s.inflight["n"], s.inflight["kind"]
        self.drop_proposal()
        s.rejections += 1
        s.rejected_total += 1
        if kind == "fix" and s.fix:
            s.fix["attempts"] += 1
            if s.fix["attempts"] >= self.opts.max_fix_attempts:
                self.log(f"giving up on fixing #{s.fix['n']}", style="yellow")
                s.fix = None
        save_state(self.repo, s)
        self.log(f"#{n} rejected: {reason}", style="yellow")
        if s.rejections >= MAX_REJECTIONS:
            raise UserError(f"{MAX_REJECTIONS} proposals in a row were unusable (last: {reason});"
                            f" see .autoresearch/{s.tag}/events.log, check the agent and "
                            f"program.md, then run again")
        if s.rejections % BACKOFF_EVERY == 0:
            pause = min(BACKOFF_MAX, self.opts.backoff * 2 ** (s.rejections // BACKOFF_EVERY - 1))
            self.log(f"{s.rejections} rejections in a row: pausing {pause:.0f}s")
            self.sleep(pause)

    # ---- run, decide, record

    def execute(self, job: dict) -> None:
        """Run a committed job's code, then decide and record. Re-entrant: resume calls it too."""
        s = self.state
        n, commit = job["n"], job["commit"]
        run_dir = self.repo / RUNS_DIR / f"{n:04d}-{commit[:7]}"
        job.update(phase="running", run_dir=f"{RUNS_DIR}/{run_dir.name}")
        s.inflight = job
        s.next_n = max(s.next_n, n + 1)
        save_state(self.repo, s)
        check_fixed_files(self.repo, s)
        for pgid in kill_stale_runs(run_dir):
            self.log(f"killed process group {pgid} left running by an interrupted loop")
        log_path = run_dir / "run.log"
        if log_path.exists():
            log_path.replace(run_dir / "run.log.interrupted")
        run_dir.mkdir(parents=True, exist_ok=True)
        code = self.git.file_at(commit)
        if (self.repo / TRAIN).read_text() != code:  # run exactly what was committed
            self.git.restore(TRAIN, commit)
        (run_dir / TRAIN).write_text(code)
        self.live(experiment=n, kind=job["kind"], commit=commit[:7],
                  description=job["description"], phase="training", step=None,
                  progress_pct=0.0, remaining_s=None, loss=None, started_at=now_iso())
        self.ui.event(f"#{n} {job['kind']} {commit[:7]}: {job['description']}")
        if self.should_abort():  # `stop --now` came while the agent was still working
            raise Aborted(f"run #{n} was not started; the next `run` runs it")
        self.phase = "training"
        try:
            result = run_training(self.opts.train_cmd, self.repo, run_dir, self.timeout,
                                  on_progress=self.on_progress, should_abort=self.should_abort,
                                  grace=self.opts.grace)
        except OSError as e:
            raise UserError(f"cannot start the train command {self.opts.train_cmd}: {e}") from e
        finally:
            self.phase = "idle"
        if result.aborted:
            raise Aborted(f"run #{n} was killed; the next `run` runs it again")
        text = log_path.read_text(errors="replace")
        verdict = read_run(result.returncode, text, result.timed_out)
        (run_dir / "metrics.json").write_text(json.dumps(
            {"n": n, "kind": job["kind"], "commit": commit, "returncode": result.returncode,
             "timed_out": result.timed_out, "seconds": round(result.seconds, 1),
             "crash_reason": verdict.reason, "profile": verdict.profile,
             "summary": verdict.metrics}, indent=2))
        self.decide(job, verdict, text)

    def decide(self, job: dict, verdict: RunVerdict, text: str) -> None:
        s = self.state
        kind, m = job["kind"], verdict.metrics
        if kind == "baseline":
            if m is None:
                self.record(job, [self.row(job, verdict, "crash")], None, {})
                raise UserError(f"the baseline crashed ({verdict.reason}): read "
                                f"{job['run_dir']}/run.log, fix the setup (data prepared? "
                                f"`uv run prepare.py`), then run again")
            updates = new_best(job["commit"], [m["val_bpb"]])
            self.record(job, [self.row(job, verdict, "keep")], None, updates)
        elif kind == "noise":
            status = "crash" if m is None else "discard"
            self.record(job, [self.row(job, verdict, status, verdict.reason or "noise")], None, {})
        elif kind == "confirm":
            self.decide_confirm(job, verdict)
        elif m is None:
            fix = self.next_fix(job, verdict, text)
            self.record(job, [self.row(job, verdict, "crash")], "revert", {"fix": fix})
        else:
            threshold = s.noise["threshold"]
            gain = s.best_val_bpb - m["val_bpb"]
            verdict_ = judge(s.best_val_bpb, m["val_bpb"], threshold)
            why = f"{m['val_bpb'] - s.best_val_bpb:+.6f} vs best {s.best_val_bpb:.6f}"
            if verdict_ == "keep":
                updates = new_best(job["commit"], [m["val_bpb"]])
                self.record(job, [self.row(job, verdict, "keep", why)], "keep", updates)
            elif verdict_ == "discard":
                self.record(job, [self.row(job, verdict, "discard", why)], "revert", {"fix": None})
            else:
                self.log(f"#{job['n']} gained {gain:.6f}: within {threshold:.6f}..."
                         f"{2 * threshold:.6f}, running it again to confirm", style="cyan")
                self.execute({"n": s.next_n, "kind": "confirm", "commit": job["commit"],
                              "parent": job["parent"], "description": f"confirm #{job['n']}: "
                              f"{job['description']}", "agent": job["agent"], "cost_usd": None,
                              "candidate": asdict(self.row(job, verdict, "discard", why))})

    def decide_confirm(self, job: dict, verdict: RunVerdict) -> None:
        s = self.state
        candidate = Row(**job["candidate"])
        if verdict.metrics is None:
            candidate.reason = f"confirmation run #{job['n']} crashed ({verdict.reason})"
            rows = [candidate, self.row(job, verdict, "crash")]
            self.record(job, rows, "revert", {"fix": None})
            return
        values = [candidate.val_bpb, verdict.metrics["val_bpb"]]
        mean = statistics.fmean(values)
        ok = confirmed(s.best_val_bpb, values, s.noise["threshold"])
        status = "keep" if ok else "discard"
        why = (f"{'confirmed' if ok else 'not confirmed'}: mean of 2 runs {mean:.6f} vs best "
               f"{s.best_val_bpb:.6f} (threshold {s.noise['threshold']:.6f})")
        candidate.status, candidate.reason = status, why
        rows = [candidate, self.row(job, verdict, status, why)]
        if ok:
            updates = new_best(job["commit"], values)
            self.record(job, rows, "keep", updates)
        else:
            self.record(job, rows, "revert", {"fix": None})

    def next_fix(self, job: dict, verdict: RunVerdict, text: str) -> dict | None:
        """The fix request for a crash worth handing back to the agent, or None."""
        attempts = job.get("fix_attempt", 0)
        if verdict.reason not in FIXABLE_REASONS or job["kind"] not in ("experiment", "fix"):
            return None
        if attempts >= self.opts.max_fix_attempts:
            if attempts:
                self.log(f"giving up on fixing after {attempts} attempts", style="yellow")
            return None
        return {"commit": job["commit"], "n": job["n"], "attempts": attempts,
                "reason": verdict.reason, "log_tail": log_tail(text)}

    def row(self, job: dict, verdict: RunVerdict, status: str, reason: str = "") -> Row:
        m = verdict.metrics if status != "crash" else None
        return Row(
            commit=job["commit"][:7], val_bpb=m["val_bpb"] if m else 0.0,
            memory_gb=m["peak_vram_mb"] / 1024 if m else 0.0, status=status,
            description=job["description"], experiment=job["n"], kind=job["kind"],
            tag=self.state.tag, timestamp=now_iso(), profile=verdict.profile,
            training_seconds=m["training_seconds"] if m else None,
            total_seconds=m["total_seconds"] if m else None,
            mfu_percent=m["mfu_percent"] if m else None,
            total_tokens_M=m["total_tokens_M"] if m else None,
            num_steps=int(m["num_steps"]) if m else None,
            reason=verdict.reason if status == "crash" else reason,
            agent=job["agent"], cost_usd=job["cost_usd"], run_dir=job["run_dir"])

    def record(self, job: dict, rows: list[Row], action: str | None, updates: dict) -> None:
        """Journal the decision, then carry it out (finish() is what resume repeats)."""
        job.update(phase="recording", rows=[asdict(r) for r in rows], action=action,
                   updates=updates)
        self.state.inflight = job
        save_state(self.repo, self.state)
        self.finish(job)

    def finish(self, job: dict) -> None:
        """results.tsv first, then git, then state. Every step can be repeated safely."""
        s = self.state
        rows = [Row(**d) for d in job["rows"]]
        present = {r.experiment for r in self.tag_rows()}
        for row in rows:
            if row.experiment not in present:
                append_result(self.repo / RESULTS, row)
        if job["action"] == "revert":
            tried = job["candidate"]["experiment"] if "candidate" in job else job["n"]
            self.git.set_ref(tried_ref(s.tag, tried), job["commit"])
            self.git.move_back(s.branch, job["parent"])
        for key, value in job["updates"].items():
            setattr(s, key, value)
        s.rejections = 0
        s.inflight = None
        save_state(self.repo, s)
        for row in rows:
            self.ui.outcome(row)
        tidy_weights(self.repo, rows, self.tag_rows(), self.opts.keep_checkpoints,
                     self.opts.sample_timeout if self.opts.sample else None,
                     lambda message: self.log(message, style="yellow"))

    # ---- small helpers

    def tag_rows(self) -> list[Row]:
        return [r for r in read_results(self.repo / RESULTS) if r.tag == self.opts.tag]

    def experiments_done(self) -> int:
        return sum(1 for r in self.tag_rows() if r.kind in ("experiment", "fix"))

    def add_cost(self, usage: Usage) -> None:
        if usage.cost_usd is None:
            self.state.cost_unknown = True
        else:
            self.state.cost_usd += usage.cost_usd
        save_state(self.repo, self.state)

    def log(self, message: str, style: str = "") -> None:
        log_event(self.repo, self.opts.tag, message)
        self.ui.event(message, style)

    def live(self, **fields: object) -> None:
        s = self.state
        self.live_fields.update(fields)
        self.live_fields.update(
            tag=self.opts.tag, agent=self.agent.name,
            best_val_bpb=s.best_val_bpb if s else None,
            best_commit=(s.best_commit or "")[:7] if s else "",
            threshold=s.noise["threshold"] if s and s.noise else None,
            time_left_s=max(0.0, self.deadline - time.monotonic()) if self.deadline else None)
        write_live(self.repo, self.opts.tag, self.live_fields)
        self.ui.update(dict(self.live_fields))

    def on_progress(self, p: Progress) -> None:
        self.live(step=p.step, progress_pct=p.progress_pct, remaining_s=p.remaining_s,
                  loss=p.loss, phase="evaluating" if p.progress_pct >= 100 else "training")

    def should_abort(self) -> bool:
        self.announce_stop()
        return self.aborting or stop_requested(self.repo, self.opts.tag) == "now"

    def announce_stop(self) -> None:
        """Say so once when Ctrl-C asked for a stop (the signal handler itself cannot print)."""
        if self.stopping and not self.live_fields.get("stopping"):
            self.log("stopping after this experiment (Ctrl-C again to abort it now)",
                     style="bold yellow")
            self.live(stopping=True)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.why_stop():
            time.sleep(min(0.5, seconds))

    def _signals(self) -> _Signals:
        return _Signals(self)


class _Signals:
    """Ctrl-C once: stop after this experiment. Twice (or SIGTERM/SIGHUP): abort it now.

    Handlers only set flags (printing from a handler can deadlock): the runner polls them and
    kills the training run; during the agent call, which may block for minutes, the handler
    raises KeyboardInterrupt so the call is abandoned.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, loop: Loop):
        self.loop = loop
        self.previous = {}

    def handle(self, signum: int, frame: object) -> None:
        loop = self.loop
        if signum == signal.SIGINT and not loop.stopping:
            loop.stopping = True
            return
        loop.aborting = True
        if loop.phase == "agent":
            raise KeyboardInterrupt

    def __enter__(self) -> _Signals:
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

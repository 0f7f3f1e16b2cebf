"""Shared pieces of the loop tests: a throwaway git repo whose train.py is a fake trainer
(loop_fake_train.py: its constants decide the outcome), a scripted agent, fake GPUs, invariant
checks."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

from autoresearch.agents import AgentRequest, Proposal, Usage
from autoresearch.config import Options
from autoresearch.execution.gpus import Slot
from autoresearch.execution.procs import PROC, live_pids
from autoresearch.ledger.results import read_results
from autoresearch.ledger.state import load_state
from autoresearch.model import Row
from autoresearch.scheduler import Loop
from autoresearch.target import load_target

REPO_ROOT = Path(__file__).resolve().parent.parent
AGENT_LOOP = REPO_ROOT / "agent_loop.py"

FAKE_TRAIN = (Path(__file__).parent / "loop_fake_train.py").read_text()

GITIGNORE = "__pycache__/\nresults.tsv\nruns/\n.autoresearch/\n*.pt\n"
CPU = [Slot(0, None, "cpu")]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(path: Path) -> Path:
    """A git repo like the real one, on branch main, with the fake train.py committed."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    (path / "train.py").write_text(FAKE_TRAIN)
    (path / "prepare.py").write_text("# the fixed harness\n")
    (path / "harness.py").write_text("# the fixed harness\n")
    (path / "constants.py").write_text("TIME_BUDGET = 5\n")
    (path / "program.md").write_text("# program\nLower val_bpb.\n")
    (path / ".gitignore").write_text(GITIGNORE)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def set_constants(text: str, **values: object) -> str:
    for name, value in values.items():
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, flags=re.M)
        assert count == 1, name
    return text


def edit(description: str, **values: object):
    """An agent step: set constants of train.py, return a Proposal."""
    def step(request: AgentRequest) -> Proposal:
        path = request.repo / "train.py"
        path.write_text(set_constants(path.read_text(), **values))
        return Proposal(description, Usage(cost_usd=0.01))
    return step


class ScriptedAgent:
    """Plays a list of steps (callables taking the request); records the requests it got.
    Thread-safe: several workers may share it."""

    name = "scripted"

    def __init__(self, steps):
        self.steps = list(steps)
        self.requests: list[AgentRequest] = []
        self.lock = threading.Lock()

    def propose(self, request: AgentRequest) -> Proposal:
        with self.lock:
            self.requests.append(request)
            if not self.steps:
                raise AssertionError("the scripted agent ran out of steps")
            step = self.steps.pop(0)
        return step(request)


class RecordingUI:
    def __init__(self):
        self.events: list[str] = []
        self.rows: list[Row] = []
        self.updates: list[dict] = []

    def event(self, text: str, style: str = "") -> None:
        self.events.append(text)

    def update(self, live: dict) -> None:
        self.updates.append(live)

    def outcome(self, row: Row) -> None:
        self.rows.append(row)


def run_loop(repo: Path, steps, tag: str = "t", slots=None, agent=None, **options):
    """The loop in process, one CPU worker by default, proposals strictly one after another."""
    opts = dict(tag=tag, noise_runs=0, timeout=20, grace=0.5, backoff=0, sample=False,
                prefetch=False, max_experiments=sum(1 for _ in steps))
    opts.update(options)
    agent = agent or ScriptedAgent(steps)
    ui = RecordingUI()
    reason = Loop(repo, Options(**opts), agent, ui, slots=slots or CPU).run()
    return reason, agent, ui


def tag_rows(repo: Path, tag: str = "t") -> list[Row]:
    """The tag's rows, read with the repository's metric (val_bpb without a target table)."""
    metric = load_target(repo).metric
    return [r for r in read_results(repo / "results.tsv", metric=metric) if r.tag == tag]


def fake_gpus(tmp_path: Path, models: list[str]) -> Path:
    """A folder with an `nvidia-smi` that answers the loop's query as the real one does."""
    folder = tmp_path / "fake-bin"
    folder.mkdir(exist_ok=True)
    lines = "\n".join(f"{i}, {model}, 143771" for i, model in enumerate(models))
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\n")
    script.chmod(0o755)
    return folder


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """agent_loop.py as a user runs it (from `cwd`): a subprocess, output not a terminal."""
    return subprocess.run([sys.executable, str(AGENT_LOOP), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


def check_git_matches_results(repo: Path, tag: str = "t") -> None:
    """The invariants the loop promises: every row once; the branch is the line of kept commits,
    each a child of the previous best; every other agent commit on a tried ref; nothing left in
    the journal; the user's checkout untouched (still on main)."""
    rows = tag_rows(repo, tag)
    numbers = [r.experiment for r in rows]
    assert len(numbers) == len(set(numbers)), f"duplicated rows: {numbers}"
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), f"lost rows: {numbers}"
    state = load_state(repo, tag)
    assert not state.jobs and not state.proposing and not state.candidates
    head = git(repo, "rev-parse", f"autoresearch/{tag}")
    assert head == state.best_commit
    line = git(repo, "rev-list", "--first-parent", f"{state.base_commit}..{head}").split()
    kept = []
    for r in rows:
        if r.status == "keep" and r.kind != "baseline" and r.commit not in kept:
            kept.append(r.commit)
    assert [c[:7] for c in reversed(line)] == kept, "the branch is not the line of kept commits"
    for r in rows:
        if r.status != "keep" and r.kind in ("experiment", "fix", "port", "confirm"):
            tried = git(repo, "rev-parse", f"refs/autoresearch/{tag}/tried/{r.experiment}")
            assert tried.startswith(r.commit), r
    assert git(repo, "branch", "--show-current") == "main"


def runs_alive(pid_file: Path) -> list[int]:
    """Host pids of the live processes that the fake train.py runs of a test started (they, and
    what they spawn, carry FAKE_PID_FILE=pid_file in their environment). The pids the runs write
    themselves are no use for this: the loop starts runs in a process namespace of their own."""
    marker = f"FAKE_PID_FILE={pid_file}".encode()
    alive = []
    for pid in live_pids():
        try:
            if marker in (PROC / str(pid) / "environ").read_bytes().split(b"\0"):
                alive.append(pid)
        except OSError:
            continue
    return alive

"""Shared pieces of the loop tests: a throwaway git repo whose train.py is a fake trainer
(loop_fake_train.py: its constants decide the outcome), a scripted agent, invariant checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from autoresearch.agents import AgentRequest, Proposal, Usage
from autoresearch.ledger.results import Row

REPO_ROOT = Path(__file__).resolve().parent.parent
AGENT_LOOP = REPO_ROOT / "agent_loop.py"

FAKE_TRAIN = (Path(__file__).parent / "loop_fake_train.py").read_text()

GITIGNORE = "__pycache__/\nresults.tsv\nruns/\n.autoresearch/\n*.pt\n"


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
    """Plays a list of steps (callables taking the request); records the requests it got."""

    name = "scripted"

    def __init__(self, steps):
        self.steps = list(steps)
        self.requests: list[AgentRequest] = []

    def propose(self, request: AgentRequest) -> Proposal:
        self.requests.append(request)
        if not self.steps:
            raise AssertionError("the scripted agent ran out of steps")
        return self.steps.pop(0)(request)


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


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess:
    """agent_loop.py as a user runs it: a subprocess, output not a terminal."""
    return subprocess.run([sys.executable, str(AGENT_LOOP), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def check_git_matches_results(repo: Path, tag: str) -> None:
    """The invariant the loop promises: every row's commit is where git says it is."""
    from autoresearch.ledger.results import read_results
    from autoresearch.ledger.state import load_state

    rows = [r for r in read_results(repo / "results.tsv") if r.tag == tag]
    numbers = [r.experiment for r in rows]
    assert numbers == sorted(set(numbers)), f"lost or duplicated rows: {numbers}"
    state = load_state(repo, tag)
    assert state.inflight is None
    branch_head = git(repo, "rev-parse", f"autoresearch/{tag}")
    assert branch_head == state.best_commit
    for r in rows:
        if r.status == "keep":
            assert subprocess.run(["git", "merge-base", "--is-ancestor", r.commit, branch_head],
                                  cwd=repo).returncode == 0, r
        elif r.kind in ("experiment", "fix"):
            tried = git(repo, "rev-parse", f"refs/autoresearch/{tag}/tried/{r.experiment}")
            assert tried.startswith(r.commit), r
    assert git(repo, "show", f"{branch_head}:train.py") == (repo / "train.py").read_text().strip()

"""Kill the loop at every step of an experiment; the next `run` must finish the job.

In process, a `Killed` exception (a BaseException, so nothing in the loop catches it) stands for
kill -9 at a chosen point; the last test does the real thing: `agent_loop.py run --agent sweep`
as a subprocess, kill -9 of its process group while the trainer is mid-run, then run again.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from loop_helpers import (
    AGENT_LOOP,
    RecordingUI,
    ScriptedAgent,
    check_git_matches_results,
    edit,
    git,
    make_repo,
)

import autoresearch.loop
from autoresearch.execution.procs import pid_alive
from autoresearch.ledger.results import read_results
from autoresearch.ledger.state import load_state
from autoresearch.loop import Loop, Options
from autoresearch.workspace.git import Git

TAG = "t"


class Killed(BaseException):
    """kill -9, as far as the loop can tell: it stops right here, no cleanup code runs."""


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def run_loop(repo, steps, **options):
    opts = dict(tag=TAG, noise_runs=0, timeout=20, grace=0.5, backoff=0, sample=False)
    opts.update(options)
    agent = ScriptedAgent(steps)
    return Loop(repo, Options(**opts), agent, RecordingUI()).run(), agent


def kill_at(monkeypatch, target, name, when):
    """Make target.name raise Killed on its call number `when` (1-based), before or after."""
    real = getattr(target, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == when:
            raise Killed(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
    return lambda: monkeypatch.setattr(target, name, real)


def rows(repo):
    return [(r.experiment, r.kind, r.status, r.description) for r in
            read_results(repo / "results.tsv")]


def test_killed_while_training_reruns_the_experiment(repo, monkeypatch):
    undo = kill_at(monkeypatch, autoresearch.loop, "run_training", when=2)
    with pytest.raises(Killed):
        run_loop(repo, [edit("idea", VAL_BPB=0.9)], max_experiments=1)
    job = load_state(repo, TAG).inflight
    assert job["phase"] == "running" and job["n"] == 2
    undo()
    reason, agent = run_loop(repo, [], max_experiments=1)
    assert rows(repo) == [(1, "baseline", "keep", "baseline"), (2, "experiment", "keep", "idea")]
    assert not agent.requests  # the interrupted experiment was run, not proposed again
    check_git_matches_results(repo, TAG)


def test_killed_after_the_row_before_git_moved(repo, monkeypatch):
    undo = kill_at(monkeypatch, Git, "move_back", when=1)
    with pytest.raises(Killed):
        run_loop(repo, [edit("worse", VAL_BPB=1.5)], max_experiments=1)
    assert rows(repo)[-1] == (2, "experiment", "discard", "worse")
    assert "VAL_BPB = 1.5" in (repo / "train.py").read_text()  # git not moved back yet
    undo()
    run_loop(repo, [], max_experiments=1)
    assert [r[0] for r in rows(repo)] == [1, 2]  # no duplicate row
    assert "VAL_BPB = 1.0" in (repo / "train.py").read_text()
    check_git_matches_results(repo, TAG)


def test_killed_right_after_the_commit(repo, monkeypatch):
    real = Git.commit_train

    def commit_then_die(self, message):
        real(self, message)
        raise Killed("after commit")

    monkeypatch.setattr(Git, "commit_train", commit_then_die)
    with pytest.raises(Killed):
        run_loop(repo, [edit("committed idea", VAL_BPB=0.9)], max_experiments=1)
    assert load_state(repo, TAG).inflight["phase"] == "committing"
    monkeypatch.setattr(Git, "commit_train", real)
    run_loop(repo, [], max_experiments=1)
    assert rows(repo)[-1] == (2, "experiment", "keep", "committed idea")
    check_git_matches_results(repo, TAG)


def test_killed_before_the_commit_drops_the_proposal(repo, monkeypatch):
    undo = kill_at(monkeypatch, Git, "commit_train", when=1)
    with pytest.raises(Killed):
        run_loop(repo, [edit("lost idea", VAL_BPB=0.9)], max_experiments=1)
    undo()
    _, agent = run_loop(repo, [edit("next idea", VAL_BPB=0.8)], max_experiments=1)
    assert rows(repo)[-1] == (2, "experiment", "keep", "next idea")  # number 2 reused
    assert "VAL_BPB = 1.0" in agent.requests[0].train_py  # the dropped edit is gone
    check_git_matches_results(repo, TAG)


def test_killed_while_the_agent_works(repo):
    cli_agents = []

    def die_midway(request):
        # a CLI agent runs in its own session: kill -9 of the loop would leave it editing
        cli_agents.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                           start_new_session=True))
        edit("half", VAL_BPB=0.9)(request)
        (request.repo / "scratch.py").write_text("agent's scratch\n")
        (request.repo / "prepare.py").write_text("# half-done cheat\n")
        raise Killed("agent")

    (repo / "mine.txt").write_text("the human's\n")
    with pytest.raises(Killed):
        run_loop(repo, [die_midway], max_experiments=1)
    assert load_state(repo, TAG).inflight["phase"] == "proposing"
    assert cli_agents[0].poll() is None
    run_loop(repo, [edit("calm", VAL_BPB=0.95)], max_experiments=1)  # dirty train.py is fine
    assert cli_agents[0].wait(timeout=10) == -signal.SIGTERM  # the resumed loop killed it
    assert not (repo / "scratch.py").exists()
    assert (repo / "prepare.py").read_text() == "# the fixed harness\n"
    assert (repo / "mine.txt").read_text() == "the human's\n"
    assert rows(repo)[-1] == (2, "experiment", "keep", "calm")
    check_git_matches_results(repo, TAG)


def test_files_undone_on_resume_are_kept_as_copies(repo):
    # The loop died while the agent worked; before restarting it the human steered through
    # program.md and wrote notes. The resumed loop cannot tell their edits from the agent's, so
    # it undoes them, but must not destroy them.
    def die_midway(request):
        edit("half", VAL_BPB=0.9)(request)
        raise Killed("agent")

    with pytest.raises(Killed):
        run_loop(repo, [die_midway], max_experiments=1)
    (repo / "program.md").write_text("# program\nNew steering: try deeper models.\n")
    (repo / "notes.txt").write_text("the human's notes\n")
    run_loop(repo, [edit("calm", VAL_BPB=0.95)], max_experiments=1)
    copies = repo / ".autoresearch" / TAG / "undone" / "0002"
    assert (copies / "program.md").read_text() == "# program\nNew steering: try deeper models.\n"
    assert (copies / "notes.txt").read_text() == "the human's notes\n"
    assert "copies in .autoresearch/t/undone/0002/" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()
    check_git_matches_results(repo, TAG)


def test_killed_during_the_confirmation_run(repo, tmp_path, monkeypatch):
    offsets = tmp_path / "offsets"
    offsets.write_text("0\n0.004\n-0.004\n")
    monkeypatch.setenv("FAKE_OFFSETS_FILE", str(offsets))
    undo = kill_at(monkeypatch, autoresearch.loop, "run_training", when=5)  # run 5 = confirm
    with pytest.raises(Killed):
        run_loop(repo, [edit("small gain", VAL_BPB=0.99)], noise_runs=2, max_experiments=1)
    assert load_state(repo, TAG).inflight["kind"] == "confirm"
    assert [r[0] for r in rows(repo)] == [1, 2, 3]  # the candidate waits for its confirmation
    undo()
    run_loop(repo, [], noise_runs=2, max_experiments=1)
    assert rows(repo)[3:] == [(4, "experiment", "keep", "small gain"),
                              (5, "confirm", "keep", "confirm #4: small gain")]
    check_git_matches_results(repo, TAG)


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_kill_9_of_the_real_cli_mid_run(repo, tmp_path):
    """`agent_loop.py run --agent sweep` killed with SIGKILL while training, then run again."""
    pid_file = tmp_path / "pids"
    slow = dict(os.environ, FAKE_PID_FILE=str(pid_file), FAKE_TRAIN_SECONDS="600")
    fast = dict(slow, FAKE_TRAIN_SECONDS="0")

    def cli(max_experiments):
        return [sys.executable, str(AGENT_LOOP), "run", "--tag", TAG, "--agent", "sweep",
                "--noise-runs", "0", "--max-experiments", str(max_experiments), "--no-sample",
                "--repo", str(repo)]

    live = repo / ".autoresearch" / TAG / "live.json"

    def training_experiment():
        try:
            data = json.loads(live.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("phase") == "training" and data.get("experiment") == 2 else None

    # the baseline, fast; then a slow experiment that is killed mid-run
    subprocess.run(cli(0), env=fast, check=True, capture_output=True, timeout=60)
    proc = subprocess.Popen(cli(3), env=slow, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(training_experiment)
        trainer = wait_for(lambda: pid_file.exists() and
                           [int(p) for p in pid_file.read_text().split()][1:])[0]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert pid_alive(trainer)  # the trainer has its own session: kill -9 of the loop misses it
    assert load_state(repo, TAG).inflight["phase"] == "running"

    out = subprocess.run(cli(3), env=fast, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not pid_alive(trainer)  # the resumed loop killed the orphaned trainer
    numbers = [r[0] for r in rows(repo)]
    assert numbers == [1, 2, 3, 4]  # nothing lost, nothing twice
    assert "interrupted while running" in (repo / ".autoresearch" / TAG / "events.log").read_text()
    assert (repo / "runs").joinpath(next(p.name for p in (repo / "runs").iterdir()
                                         if p.name.startswith("0002-")),
                                    "run.log.interrupted").exists()
    check_git_matches_results(repo, TAG)
    assert git(repo, "status", "--porcelain") == ""

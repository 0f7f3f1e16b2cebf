"""Kill the loop at every step; the next `run` must finish the job.

In process, a `Killed` exception (a BaseException, so nothing in the loop catches it and no clean-up
code runs) stands for kill -9 at a chosen point. Then the real thing: `agent_loop.py run` as a
subprocess, kill -9 of its process group while training, then the same command again; and a
chaos test that kills a loop of two workers again and again at random moments.
"""

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from loop_helpers import (
    AGENT_LOOP,
    ScriptedAgent,
    check_git_matches_results,
    edit,
    fake_gpus,
    git,
    make_repo,
    run_cli,
    run_loop,
    runs_alive,
    tag_rows,
)

from autoresearch.execution.gpus import Slot
from autoresearch.execution.local import LocalExecutor
from autoresearch.ledger.porter import Porter
from autoresearch.ledger.state import load_state
from autoresearch.target import DEFAULT
from autoresearch.workspace.git import Git

TAG = "t"


class Killed(BaseException):
    """kill -9, as far as the loop can tell: it stops right here, no clean-up code runs."""


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def kill_at(monkeypatch, target, name, when):
    """Make target.name raise Killed on its call number `when` (1-based)."""
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
    return [(r.experiment, r.kind, r.status, r.description) for r in tag_rows(repo)]


@pytest.mark.slow
def test_killed_while_training_reruns_the_run(repo, monkeypatch):
    undo = kill_at(monkeypatch, LocalExecutor, "execute", when=2)
    with pytest.raises(Killed):
        run_loop(repo, [edit("idea", VAL_BPB=1.1)])
    (job,) = load_state(repo, TAG).jobs
    assert job.phase.value == "running" and job.n == 2
    undo()
    _, agent, _ = run_loop(repo, [], max_experiments=1)
    assert rows(repo) == [(1, "baseline", "keep", "baseline"),
                          (2, "experiment", "discard", "idea")]
    assert not agent.requests  # the interrupted experiment was run, not proposed again
    check_git_matches_results(repo, TAG)


def test_killed_after_the_row_before_the_refs(repo, monkeypatch):
    undo = kill_at(monkeypatch, Git, "set_ref", when=1)  # the discarded run's tried ref
    with pytest.raises(Killed):
        run_loop(repo, [edit("worse", VAL_BPB=1.5)])
    assert rows(repo)[-1] == (2, "experiment", "discard", "worse")
    assert load_state(repo, TAG).jobs[0].phase.value == "recording"
    undo()
    run_loop(repo, [], max_experiments=1)
    assert [r[0] for r in rows(repo)] == [1, 2]  # no duplicate row
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_killed_between_keeping_and_saving(repo, monkeypatch):
    real = Git.set_ref

    def move_then_die(self, ref, commit, old=None):
        real(self, ref, commit, old)
        if ref == f"refs/heads/autoresearch/{TAG}":
            raise Killed("after the branch moved")

    monkeypatch.setattr(Git, "set_ref", move_then_die)
    with pytest.raises(Killed):
        run_loop(repo, [edit("good", VAL_BPB=0.9)])
    monkeypatch.setattr(Git, "set_ref", real)
    state = load_state(repo, TAG)
    assert git(repo, "rev-parse", f"autoresearch/{TAG}") != state.best_commit  # moved, unsaved
    run_loop(repo, [], max_experiments=1)  # the branch position is explained by the journal
    assert [r[2] for r in rows(repo)] == ["keep", "keep", "keep"]
    check_git_matches_results(repo, TAG)


def test_killed_right_after_the_commit_drops_the_proposal(repo, monkeypatch):
    real = Git.commit_files

    def commit_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise Killed("after commit")

    monkeypatch.setattr(Git, "commit_files", commit_then_die)
    with pytest.raises(Killed):
        run_loop(repo, [edit("lost idea", VAL_BPB=1.1)])
    assert load_state(repo, TAG).proposing  # journaled as under way
    monkeypatch.setattr(Git, "commit_files", real)
    _, agent, _ = run_loop(repo, [edit("next idea", VAL_BPB=1.2)])
    assert rows(repo)[-1] == (2, "experiment", "discard", "next idea")
    assert "VAL_BPB = 1.0" in agent.requests[0].train_py  # the dropped edit is gone
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_a_lock_left_in_a_work_tree_by_kill_9_does_not_stop_the_next_run(repo):
    """kill -9 during `git commit` in a worker's tree leaves .git/worktrees/<k>/index.lock;
    the next `run` of the same tag must go on, not refuse every git command there."""
    run_loop(repo, [edit("better", VAL_BPB=0.9)])
    admin = Path(git(repo / ".autoresearch" / TAG / "trees" / "0", "rev-parse",
                     "--absolute-git-dir"))
    (admin / "index.lock").write_text("")
    reason, _, _ = run_loop(repo, [edit("worse", VAL_BPB=1.5)], max_experiments=2)
    assert [r[3] for r in rows(repo) if r[1] == "experiment"] == ["better", "worse"], reason
    assert not (admin / "index.lock").exists()


def test_killed_while_the_agent_works(repo):
    cli_agents = []

    def die_midway(request):
        # a CLI agent runs in its own session: kill -9 of the loop would leave it editing
        cli_agents.append(subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
            env=dict(os.environ, **request.env)))
        edit("half", VAL_BPB=0.9)(request)
        (request.repo / "scratch.py").write_text("agent's scratch\n")
        (request.repo / "prepare.py").write_text("# half-done cheat\n")
        raise Killed("agent")

    (repo / "mine.txt").write_text("the human's\n")
    with pytest.raises(Killed):
        run_loop(repo, [die_midway])
    assert load_state(repo, TAG).proposing
    assert cli_agents[0].poll() is None
    run_loop(repo, [edit("calm", VAL_BPB=1.05)])
    assert cli_agents[0].wait(timeout=10) == -signal.SIGTERM  # the resumed loop killed it
    tree = repo / ".autoresearch" / TAG / "trees" / "0"
    assert not (tree / "scratch.py").exists()
    assert (tree / "prepare.py").read_text() == "# the fixed harness\n"
    copies = repo / ".autoresearch" / TAG / "undone" / "resume-w0"
    assert (copies / "scratch.py").read_text() == "agent's scratch\n"  # undone, not destroyed
    assert (repo / "mine.txt").read_text() == "the human's\n"
    assert rows(repo)[-1] == (2, "experiment", "discard", "calm")
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_killed_during_the_confirmation(repo, tmp_path, monkeypatch):
    undo = kill_at(monkeypatch, LocalExecutor, "execute", when=4)  # run 4 = the confirmation
    with pytest.raises(Killed):
        run_loop(repo, [edit("gain", VAL_BPB=0.9)], controls=True)
    state = load_state(repo, TAG)
    assert [c.n for c in state.candidates] == [2]  # the candidate waits for its pair
    assert [r[0] for r in rows(repo)] == [1, 3]  # its row is held until then
    undo()
    run_loop(repo, [], max_experiments=1, controls=True)
    # the control of before the restart is not paired with a confirmation after it: the parent
    # runs again (#4, the interrupted confirmation's number went to it first), then the candidate
    assert rows(repo)[2:] == [(5, "control", "discard", "control for #2: its parent again "
                                                         "(after a restart)"),
                              (2, "experiment", "keep", "gain"),
                              (4, "confirm", "keep", "confirm #2: gain")]
    assert "#2's control ran before the restart" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()
    check_git_matches_results(repo, TAG)


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def cli(repo, max_experiments, *extra):
    return [sys.executable, str(AGENT_LOOP), "run", "--tag", TAG, "--agent", "sweep",
            "--noise-runs", "0", "--max-experiments", str(max_experiments), "--no-sample",
            "--repo", str(repo), *extra]


@pytest.mark.slow
def test_kill_9_of_the_real_cli_mid_run(repo, tmp_path):
    """`agent_loop.py run --agent sweep` killed with SIGKILL while training, then run again."""
    pid_file = tmp_path / "pids"
    fast = dict(os.environ, FAKE_PID_FILE=str(pid_file), FAKE_TRAIN_SECONDS="0")
    subprocess.run(cli(repo, 1), env=fast, check=True, capture_output=True, timeout=120)
    started = len(pid_file.read_text().split())
    proc = subprocess.Popen(cli(repo, 3), env=dict(fast, FAKE_TRAIN_SECONDS="600"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(lambda: [int(p) for p in pid_file.read_text().split()][started:])
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert runs_alive(pid_file)  # the run has its own session: kill -9 of the loop misses it
    assert any(j.phase.value == "running" for j in load_state(repo, TAG).jobs)

    out = subprocess.run(cli(repo, 3), env=fast, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert runs_alive(pid_file) == []  # the resumed loop killed the orphaned run
    assert "was interrupted: running it again" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()
    assert list((repo / "runs" / TAG).glob("*/run.log.interrupted"))
    check_git_matches_results(repo, TAG)
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.slow
def test_kill_9_chaos_with_two_workers(repo, tmp_path):
    """Kill -9 a two-GPU loop at random moments, again and again; then let it finish."""
    rng = random.Random(7)
    pid_file = tmp_path / "pids"
    env = dict(os.environ, PATH=f"{fake_gpus(tmp_path, ['NVIDIA H200'] * 2)}:{os.environ['PATH']}",
               FAKE_PID_FILE=str(pid_file), FAKE_TRAIN_SECONDS="1.5",
               FAKE_COUNTER=str(tmp_path / "counter"), FAKE_NOISE="0.003", FAKE_SEED="1")
    command = cli(repo, 10, "--gpus", "0,1", "--noise-runs", "1")
    for _ in range(6):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(1.0, 6.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows_ = tag_rows(repo)
    assert sum(r.kind in ("experiment", "fix", "port") for r in rows_) >= 10
    assert {r.worker for r in rows_} == {0, 1} and {r.gpu for r in rows_} == {"0", "1"}
    check_git_matches_results(repo, TAG)
    assert runs_alive(pid_file) == []  # no run outlived the loops that started it


@pytest.mark.slow
def test_killed_mid_pairs_keeps_the_pairs_before_and_renews_the_cut_one(repo, tmp_path,
                                                                         monkeypatch):
    """A grey-zone candidate (as in test_precision) killed during its second pair's
    confirmation: after the restart its first pair still counts, the control of the cut-off pair
    runs again, and the pairs go on until the test keeps it."""
    offsets = tmp_path / "offsets"
    offsets.write_text("0\n0.001\n-0.001\n-0.002\n")  # the wave, the first run; then exact
    monkeypatch.setenv("FAKE_OFFSETS_FILE", str(offsets))
    undo = kill_at(monkeypatch, LocalExecutor, "execute", when=8)  # 1-3 wave, 4 it, 5-6 7-8 pairs
    with pytest.raises(Killed):
        run_loop(repo, [edit("a small gain", VAL_BPB=0.999)], noise_runs=2, max_pairs=5,
                 controls=True)
    (cand,) = load_state(repo, TAG).candidates
    assert cand.gains == [pytest.approx(0.001)] and cand.control == pytest.approx(1.0)
    undo()
    run_loop(repo, [], max_experiments=1, noise_runs=2, max_pairs=5, controls=True)
    kinds = [r[1] for r in rows(repo)]
    assert kinds.count("control") == kinds.count("confirm") + 1  # the cut-off one renewed
    assert [r[3] for r in rows(repo)].count("control for #4: its parent again (after a "
                                            "restart)") == 1
    first = next(r for r in tag_rows(repo) if r.kind == "experiment")
    assert first.status == "keep" and first.pairs == kinds.count("confirm")
    assert first.gain == pytest.approx(0.001)
    check_git_matches_results(repo, TAG)


def test_killed_mid_replica_keeps_the_first_run_and_runs_the_cut_one_again(repo, tmp_path,
                                                                           monkeypatch):
    """The default rule: a grey-zone candidate killed during its second run. After the restart
    its first run (held in state, not in results.tsv yet) still counts, the cut-off run runs
    again, and the test decides on three runs of it, no more."""
    offsets = tmp_path / "offsets"
    # the wave, then the first two runs of it (the cut-off one consumes nothing); then exact
    offsets.write_text("0\n0.001\n-0.001\n0.001\n0.002\n")
    monkeypatch.setenv("FAKE_OFFSETS_FILE", str(offsets))
    undo = kill_at(monkeypatch, LocalExecutor, "execute", when=5)  # 1-3 wave, 4 it, 5 again
    with pytest.raises(Killed):
        run_loop(repo, [edit("a gain", VAL_BPB=0.995)], noise_runs=2)
    (cand,) = load_state(repo, TAG).candidates
    assert cand.row.val_bpb == pytest.approx(0.996) and cand.control is None
    undo()
    run_loop(repo, [], max_experiments=1, noise_runs=2)
    kinds = [r[1] for r in rows(repo)]
    assert kinds.count("control") == 0 and kinds.count("confirm") == 2
    first = next(r for r in tag_rows(repo) if r.kind == "experiment")
    assert first.status == "keep" and first.pairs == 3
    assert first.gain == pytest.approx(1.0 - (0.996 + 0.997 + 0.995) / 3, abs=1e-6)
    assert load_state(repo, TAG).candidates == []
    check_git_matches_results(repo, TAG)


def once_w0_trains(repo, step):
    """An agent step taken once worker 0's experiment is training: both run at once, and
    worker 0's, started first, is recorded first."""
    def wait_then(request):
        deadline = time.monotonic() + 30
        while not any(j.worker == 0 and j.kind.value == "experiment" and j.phase.value ==
                      "running" for j in load_state(repo, TAG).jobs):
            assert time.monotonic() < deadline, "worker 0's experiment never started"
            time.sleep(0.05)
        return step(request)
    return wait_then


@pytest.mark.slow
def test_killed_before_a_decided_port_is_queued(repo, monkeypatch):
    """Two changes made at once (as in test_parallel): worker 1's, kept second, is to be ported
    onto the new best. Killed after its merge, before the port was queued: the restart, with
    one worker left, carries it again, runs it there and writes the ported run's row once."""
    monkeypatch.setenv("FAKE_TRAIN_SECONDS", "1")
    undo = kill_at(monkeypatch, Porter, "_hand_over", when=1)
    agents = [ScriptedAgent([edit("lower VAL_BPB", VAL_BPB=0.9)]),
              ScriptedAgent([once_w0_trains(repo, edit("a bonus", BONUS=-0.05))])]
    slots = [Slot(k, str(k), "NVIDIA H200") for k in range(2)]
    with pytest.raises(Killed):
        run_loop(repo, [], slots=slots, agent=agents, noise_runs=1, max_experiments=2)
    (pending,) = load_state(repo, TAG).porting
    assert pending.port.worker == 1 and pending.port.description == "a bonus"
    assert pending.port.n not in [r.experiment for r in tag_rows(repo)]  # its row waits
    undo()
    idle = ScriptedAgent([])
    run_loop(repo, [], slots=slots[:1], agent=[idle], noise_runs=1, max_experiments=2)
    numbers = [r.experiment for r in tag_rows(repo)]
    assert sorted(numbers) == sorted(set(numbers)) and pending.port.n in numbers
    port = [r for r in tag_rows(repo) if r.kind == "port"]
    assert port and port[0].status == "keep" and f"port of #{pending.port.n}" in port[0].description
    assert port[0].worker == 0
    assert not idle.requests  # both ideas were counted: the agent was not asked for a third
    assert load_state(repo, TAG).porting == []
    assert f"#{pending.port.n} was to be ported: carrying it onto the best" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_killed_between_a_ports_run_and_its_control(repo, monkeypatch):
    """A port's own run is the first half of its first pair; killed before its control ran,
    the restart runs the port again after the control, so no pair spans the restart."""
    real = LocalExecutor.execute

    def execute(self, spec, *args, **kwargs):
        # (with two workers a crossover's candidate half may wait for its control too)
        if any(c.pending is not None and c.row.kind == "port"
               for c in load_state(repo, TAG).candidates):
            raise Killed("a port's control")
        return real(self, spec, *args, **kwargs)

    monkeypatch.setattr(LocalExecutor, "execute", execute)
    agents = [ScriptedAgent([edit("lower VAL_BPB", VAL_BPB=0.9)]),
              ScriptedAgent([edit("a bonus", BONUS=-0.05)])]
    slots = [Slot(k, str(k), "NVIDIA H200") for k in range(2)]
    with pytest.raises(Killed):
        run_loop(repo, [], slots=slots, agent=agents, noise_runs=1, max_experiments=2,
                 controls=True)
    (cand,) = load_state(repo, TAG).candidates
    assert cand.pending is not None
    monkeypatch.setattr(LocalExecutor, "execute", real)
    run_loop(repo, [], slots=slots, agent=[ScriptedAgent([]), ScriptedAgent([])], noise_runs=1,
             max_experiments=2, controls=True)
    assert f"#{cand.n} ran before the restart: it runs again after its control" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()
    port = next(r for r in tag_rows(repo) if r.experiment == cand.n)
    confirms = [r for r in tag_rows(repo) if r.kind == "confirm" and f"#{cand.n}:" in
                r.description]
    assert port.kind == "port" and port.status == "keep" and port.pairs == 1 and confirms
    check_git_matches_results(repo, TAG)


def test_a_tag_from_before_harness_py_is_not_resumed_across_the_change(tmp_path, monkeypatch):
    """A tag started when the harness was prepare.py and constants.py alone, its commits without
    harness.py; then the checkout gets it (an upgrade). Resuming says so in one line."""
    repo = make_repo(tmp_path / "repo")
    git(repo, "rm", "-q", "harness.py")
    git(repo, "commit", "-qm", "the harness before harness.py")
    before = replace(DEFAULT, fixed=("prepare.py", "constants.py"))  # the loop as it was
    run_loop(repo, [edit("idea", VAL_BPB=0.9)], tag=TAG, target=before)
    (repo / "harness.py").write_text("# the fixed harness\n")
    git(repo, "add", "harness.py")
    git(repo, "commit", "-qm", "upgrade: harness.py")
    out = run_cli("run", "--tag", TAG, "--agent", "sweep", "--repo", str(repo))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"error: tag {TAG} started before harness.py joined the fixed harness: its runs would "
        "not compare with new ones. Start a new --tag"]

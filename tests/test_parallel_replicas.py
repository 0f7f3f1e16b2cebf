"""Replicas on several workers, the whole loop: two fake GPUs whose numbers differ by a fixed
offset, the fast fake trainer, scripted agents. A candidate's next run goes to the worker whose
GPU sits idle (its agent still thinking) rather than waiting behind its own worker's next idea;
the keep is right only because each run is corrected by its own GPU's offset; and a loop killed
while the other worker runs the replica runs it again after the restart, once."""

import json
import threading

import pytest
from loop_helpers import (
    ScriptedAgent,
    check_git_matches_results,
    edit,
    git,
    make_repo,
    run_cli,
    run_loop,
)
from loop_helpers import tag_rows as rows_of
from test_loop_resume import Killed, wait_for

from autoresearch.execution.gpus import Slot
from autoresearch.execution.local import LocalExecutor
from autoresearch.ledger.state import load_state

TAG = "t"
SLOTS = [Slot(k, str(k), "NVIDIA H200") for k in range(2)]
GAIN = 0.99  # the candidate's VAL_BPB: 0.01 better than the baseline on either GPU


@pytest.fixture
def repo(tmp_path, monkeypatch):
    # GPU 1 reads 0.05 higher; no run-to-run noise: the first wave (one run a worker) fixes the
    # offsets exactly and leaves the spread unknown, so the gain's first run asks for a replica
    monkeypatch.setenv("FAKE_GPU_OFFSET", "1:0.05")
    pids, hold = tmp_path / "pids", tmp_path / "hold"
    monkeypatch.setenv("FAKE_PID_FILE", str(pids))
    monkeypatch.setenv("FAKE_HOLD", str(hold))
    hold.write_text("4")  # run 4 (the gain's first) waits until worker 1's next idea is queued
    threading.Thread(target=release, args=(tmp_path / "repo", hold), daemon=True).start()
    return make_repo(tmp_path / "repo")


def release(repo, hold):
    """Let the held run go once worker 1's second idea waits for its GPU (so that worker 1 has
    something of its own to run when the replica is queued)."""
    def second_queued():
        try:
            return any(j.worker == 1 and j.description == "second idea"
                       for j in load_state(repo, TAG).jobs)
        except Exception:  # noqa: BLE001 (no state.json yet)
            return False

    wait_for(second_queued)
    hold.unlink()


def after(predicate, step):
    """An agent step that waits (the agent thinking: its GPU idle) until predicate() holds."""
    def wait(request):
        wait_for(predicate)
        return step(request)
    return wait


def has_row(repo, description, status=None):
    return lambda: any(r.description == description and status in (None, r.status)
                       for r in rows_of(repo))


def agents(repo, last):
    """Worker 0: a no-op, then (thinking until the gain is settled) `last`. Worker 1: the gain,
    once worker 0's no-op has run (so it is run 4), then a second idea while the gain trains."""
    return [ScriptedAgent([edit("no-op", MATRIX_LR=0.05), last]),
            ScriptedAgent([after(has_row(repo, "no-op"), edit("gain", VAL_BPB=GAIN)),
                           edit("second idea", MATRIX_LR=0.06)])]


def check_the_gain(repo):
    """The gain ran on GPU 1 (1.04, worse than the baseline's mean over both GPUs, 1.025) and
    again on GPU 0 (0.99): kept, 0.01 better than its parent on each GPU."""
    runs = [r for r in rows_of(repo) if r.description in ("gain", "confirm #4: gain")]
    assert [(r.kind, r.worker) for r in runs] == [("experiment", 1), ("confirm", 0)]
    assert [r.val_bpb for r in runs] == pytest.approx([GAIN + 0.05, GAIN])
    assert runs[0].status == "keep" and runs[0].gain == pytest.approx(0.01)
    assert f"VAL_BPB = {GAIN}" in git(repo, "show", f"autoresearch/{TAG}:train.py")
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_a_replica_runs_on_the_idle_worker_and_the_offsets_keep_the_gain(repo):
    last = after(has_row(repo, "gain", "keep"), edit("late no-op", MATRIX_LR=0.07))
    run_loop(repo, [], slots=SLOTS, agent=agents(repo, last), prefetch=True, max_experiments=4)
    check_the_gain(repo)
    others = [r for r in rows_of(repo) if r.kind == "experiment" and r.description != "gain"]
    assert len(others) == 3 and {r.status for r in others} == {"discard"}  # the no-ops


@pytest.mark.slow
def test_killed_while_the_other_worker_runs_the_replica(repo, monkeypatch):
    """kill -9 while worker 0 runs worker 1's replica: state.json says worker 0 held it; the
    restart runs it again under its number, and the gain is kept on its two runs, no more."""
    real = LocalExecutor.execute
    cut = threading.Event()

    def execute(self, spec, *args, **kwargs):
        if cut.is_set() or (spec.gpu == "0" and load_state(repo, TAG).candidates):
            cut.set()
            raise Killed("the replica on worker 0")
        return real(self, spec, *args, **kwargs)

    def killed_too(request):  # the loop's agent on worker 0 goes down with it
        cut.wait(60)
        raise Killed("worker 0's agent")

    monkeypatch.setattr(LocalExecutor, "execute", execute)
    with pytest.raises(Killed):
        run_loop(repo, [], slots=SLOTS, agent=agents(repo, killed_too), prefetch=True,
                 max_experiments=4)
    wait_for(lambda: not [t for t in threading.enumerate()
                          if t.name.startswith(("run-w", "agent-w")) and t.is_alive()])
    (replica,) = [j for j in load_state(repo, TAG).jobs if j.kind.value == "confirm"]
    assert (replica.worker, replica.phase.value) == (0, "running")
    monkeypatch.setattr(LocalExecutor, "execute", real)
    run_loop(repo, [], slots=SLOTS, agent=[ScriptedAgent([]), ScriptedAgent([])],
             max_experiments=3)  # worker 0's idea was cut short with the loop: none is asked
    check_the_gain(repo)
    (again,) = [r for r in rows_of(repo) if r.kind == "confirm"]
    assert again.experiment == replica.n
    assert f"run #{replica.n} (confirm) was interrupted: running it again" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()


@pytest.mark.slow
def test_status_says_how_busy_the_workers_were_while_the_spread_was_measured(tmp_path,
                                                                             monkeypatch):
    """Each run's metrics.json counts the workers that trained at once while it ran; `status`
    says the first wave measured the spread with both workers busy."""
    repo = make_repo(tmp_path / "repo")
    pids, hold = tmp_path / "pids", tmp_path / "hold"
    monkeypatch.setenv("FAKE_PID_FILE", str(pids))
    monkeypatch.setenv("FAKE_HOLD", str(hold))
    hold.write_text("1")  # the first run waits until the second has started beside it

    def both_started():
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) >= 2)
        hold.unlink()

    threading.Thread(target=both_started, daemon=True).start()
    run_loop(repo, [], slots=SLOTS, agent=[ScriptedAgent([]), ScriptedAgent([])])
    wave = sorted((repo / "runs" / TAG).glob("*/metrics.json"))
    assert [json.loads(p.read_text())["busy_workers"] for p in wave] == [2, 2]
    out = run_cli("status", "--repo", ".", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert "2 baseline runs, spread 0.000000; measured with all 2 workers busy" in out.stdout


@pytest.mark.slow
def test_with_controls_a_pair_crosses_the_two_gpus_and_the_offsets_keep_the_gain(tmp_path,
                                                                                 monkeypatch):
    """--controls on two GPUs 0.05 apart: the gain's first run on GPU 1 reads 1.04, the
    control on GPU 0 1.0 (raw, a loss of 0.04); corrected by the offsets the pair gains 0.01 and
    the change is kept. Each pair's halves ran on different workers, swapped pair by pair."""
    monkeypatch.setenv("FAKE_GPU_OFFSET", "1:0.05")
    repo = make_repo(tmp_path / "repo")
    agents = [ScriptedAgent([after(has_row(repo, "gain", "keep"), edit("late no-op",
                                                                       MATRIX_LR=0.07))]),
              ScriptedAgent([edit("gain", VAL_BPB=GAIN)])]
    run_loop(repo, [], slots=SLOTS, agent=agents, controls=True, max_experiments=2)
    rows = rows_of(repo)
    (gain,) = [r for r in rows if r.description == "gain"]
    assert gain.worker == 1 and gain.status == "keep" and gain.gain == pytest.approx(0.01)
    pairs = gain.pairs
    halves = [(r.kind, r.worker) for r in rows if r.kind in ("control", "confirm")]
    assert sorted(halves) == sorted([("confirm", 1), ("control", 0), ("confirm", 0),
                                     ("control", 1)][:2 * pairs])
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_killed_while_a_crossovers_control_runs_after_its_candidate_half(tmp_path,
                                                                         monkeypatch):
    """kill -9 after a crossover's candidate half finished, while its control still ran: no
    pair spans the restart (the candidate runs again beside the control), and its rows stay."""
    repo = make_repo(tmp_path / "repo")
    real = LocalExecutor.execute

    def candidate_half_done():
        return any(c.pending is not None for c in load_state(repo, TAG).candidates)

    def execute(self, spec, *args, **kwargs):
        state = load_state(repo, TAG)
        if state.candidates and spec.run_dir.name.endswith(state.base_commit[:7]):
            wait_for(candidate_half_done)  # the control outlives the candidate's half
            raise Killed("a crossover's control")
        return real(self, spec, *args, **kwargs)

    monkeypatch.setattr(LocalExecutor, "execute", execute)
    shared = ScriptedAgent([edit("gain", VAL_BPB=GAIN)])  # whichever worker asks first
    with pytest.raises(Killed):
        run_loop(repo, [], slots=SLOTS, agent=shared, controls=True, max_experiments=1)
    wait_for(lambda: not [t for t in threading.enumerate()
                          if t.name.startswith(("run-w", "agent-w")) and t.is_alive()])
    (cand,) = load_state(repo, TAG).candidates
    assert cand.pending is not None
    monkeypatch.setattr(LocalExecutor, "execute", real)
    run_loop(repo, [], slots=SLOTS, agent=ScriptedAgent([]), controls=True, max_experiments=1)
    assert f"#{cand.n} ran before the restart: it runs again after its control" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()
    rows = rows_of(repo)
    (gain,) = [r for r in rows if r.description == "gain"]
    confirms = [r for r in rows if r.kind == "confirm"]
    assert gain.status == "keep" and len(confirms) == gain.pairs + 1  # +1: before the restart
    assert confirms[0].reason.endswith("its control is still running")
    check_git_matches_results(repo, TAG)

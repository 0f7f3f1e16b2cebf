"""Several workers at once: fake GPUs (an nvidia-smi written by the test, CUDA_VISIBLE_DEVICES
per worker, the fast fake trainer), the first wave on every worker, kept changes that compound
through rebases and ports, merge conflicts sent back to the agent, what the agents see of each
other, and the GPU models the loop will and will not compare."""

import os
import threading
import time

import pytest
from loop_helpers import (
    ScriptedAgent,
    check_git_matches_results,
    edit,
    fake_gpus,
    git,
    make_repo,
    run_loop,
    tag_rows,
)

from autoresearch.agents import AgentRefused, Proposal, Usage
from autoresearch.agents.prompt import build_context
from autoresearch.errors import UserError
from autoresearch.execution.gpus import Slot, plan_slots
from autoresearch.ledger.state import load_state

TAG = "t"


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def gpus(n, model="NVIDIA H200"):
    return [Slot(k, str(k), model) for k in range(n)]


def best_train_py(repo):
    return git(repo, "show", f"autoresearch/{TAG}:train.py")


def test_one_worker_per_gpu_and_the_first_wave_on_all_of_them(repo, tmp_path, monkeypatch):
    devices = tmp_path / "devices"
    monkeypatch.setenv("FAKE_DEVICE_FILE", str(devices))
    monkeypatch.setenv("PATH", f"{fake_gpus(tmp_path, ['NVIDIA H200'] * 3)}:{os.environ['PATH']}")
    slots = plan_slots("all", mixed=False)
    assert [(s.worker, s.gpu, s.device) for s in slots] == [
        (0, "0", "NVIDIA H200"), (1, "1", "NVIDIA H200"), (2, "2", "NVIDIA H200")]
    steps = [edit(f"no-op {k}", MATRIX_LR=0.05 + 0.01 * k) for k in range(4)]
    run_loop(repo, steps, slots=slots, noise_runs=1, prefetch=True)
    rows = tag_rows(repo)
    wave = [r for r in rows if r.kind in ("baseline", "noise")]
    assert sorted(r.worker for r in wave) == [0, 1, 2]  # one round makes 1 + --noise-runs 1
    noise = load_state(repo, TAG).noise
    # three runs, a commit and two free offsets: no spread yet (the first replicas give it)
    assert noise.values == pytest.approx([1.0] * 3) and noise.std is None
    assert noise.rule.startswith("no spread yet") and noise.threshold == 0.0  # the floor
    assert noise.offsets == pytest.approx({"0": 0.0, "1": 0.0, "2": 0.0})
    assert {(r.worker, r.gpu, r.device) for r in rows} <= {
        (0, "0", "NVIDIA H200"), (1, "1", "NVIDIA H200"), (2, "2", "NVIDIA H200")}
    assert sorted(set(devices.read_text().split())) == ["0", "1", "2"]
    assert sum(r.kind == "experiment" for r in rows) == 4
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_changes_made_at_once_compound(repo):
    """Two workers improve two different knobs from the same best: whichever is kept second was
    judged against its own parent, then merged onto the new best, run and kept: the best has
    both changes, and the branch is a line of kept commits."""
    both = threading.Barrier(2, timeout=60)  # both propose on the base, however busy the box

    def together(step):
        def wait_then(request):
            both.wait()
            return step(request)
        return wait_then

    agents = [ScriptedAgent([together(edit("lower VAL_BPB", VAL_BPB=0.9))]),
              ScriptedAgent([together(edit("a bonus", BONUS=-0.05))])]
    run_loop(repo, [], slots=gpus(2), agent=agents, noise_runs=1, max_experiments=2)
    rows = tag_rows(repo)
    port = [r for r in rows if r.kind == "port"]
    assert port and port[0].status == "keep" and "port of #" in port[0].description
    text = best_train_py(repo)
    assert "VAL_BPB = 0.9" in text and "BONUS = -0.05" in text
    assert load_state(repo, TAG).best_commit.startswith(port[-1].commit)
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_a_waiting_proposal_is_rebased_onto_a_new_best(repo):
    steps = [edit("lower VAL_BPB", VAL_BPB=0.9), edit("a bonus", BONUS=-0.05)]
    run_loop(repo, steps, prefetch=True)  # the second is proposed while the first trains
    rows = {r.experiment: r for r in tag_rows(repo)}
    second = next(r for r in rows.values() if r.description.startswith("a bonus"))
    assert "(rebased onto" in second.description and second.kind == "experiment"
    first = next(r for r in rows.values() if r.description == "lower VAL_BPB")
    assert second.parent == first.commit and second.status == "keep"
    assert "BONUS = -0.05" in best_train_py(repo) and "VAL_BPB = 0.9" in best_train_py(repo)
    check_git_matches_results(repo, TAG)


def conflicting_agents(port_step):
    """Both workers change the VAL_BPB line; whichever is kept second gets a port request."""
    def port(request):
        assert request.port is not None and "VAL_BPB" in request.port.diff
        assert "<<<<<<<" in request.port.conflict
        return port_step(request)

    return [ScriptedAgent([edit("VAL_BPB down", VAL_BPB=0.9), port]),
            ScriptedAgent([edit("VAL_BPB further down", VAL_BPB=0.85), port])]


@pytest.mark.slow
def test_a_merge_conflict_goes_back_to_the_agent_once(repo):
    agents = conflicting_agents(edit("ported: both", VAL_BPB=0.8))
    run_loop(repo, [], slots=gpus(2), agent=agents, noise_runs=1, max_experiments=2)
    rows = tag_rows(repo)
    ported = [r for r in rows if "ported by the agent" in r.reason]
    assert len(ported) == 1 and ported[0].status == "discard"
    port = [r for r in rows if r.kind == "port"]
    assert port and port[0].status == "keep" and port[0].description == "ported: both"
    assert "VAL_BPB = 0.8" in best_train_py(repo)
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_a_failed_port_is_a_discard_with_its_reason(repo):
    def refuse(request):
        raise AgentRefused("cannot see how", Usage())

    agents = conflicting_agents(refuse)
    run_loop(repo, [], slots=gpus(2), agent=agents, noise_runs=1, max_experiments=2)
    rows = tag_rows(repo)
    (lost,) = [r for r in rows if "port failed" in r.reason]
    assert lost.status == "discard" and "merge" not in lost.kind
    assert "the agent's port failed: the agent gave no usable edit: cannot see how" in lost.reason
    assert not [r for r in rows if r.kind == "port"]
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_agents_see_what_the_other_workers_try(repo, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_SECONDS", "3")

    def wait_for_the_other(request):
        deadline = time.monotonic() + 60
        while not any(j.worker == 0 and j.kind.value == "experiment"
                      for j in load_state(repo, TAG).jobs) and time.monotonic() < deadline:
            time.sleep(0.05)
        return Proposal("nothing yet", Usage())  # rejected: train.py unchanged

    agents = [ScriptedAgent([edit("deeper idea", VAL_BPB=1.2)]),
              ScriptedAgent([wait_for_the_other, edit("my own idea", BONUS=0.1)])]
    run_loop(repo, [], slots=gpus(2), agent=agents, noise_runs=1, prefetch=True,
             max_experiments=2)
    second = agents[1].requests[1]
    (other,) = second.inflight
    assert other.worker == 0 and other.description == "deeper idea"
    assert other.changes == ["VAL_BPB 1.0 -> 1.2"]
    assert "worker 0: deeper idea [VAL_BPB 1.0 -> 1.2]" in build_context(second)


@pytest.mark.slow
def test_a_gpu_offset_is_the_gpus_not_the_noise(repo, monkeypatch):
    """Two GPU models 0.05 apart: the noise model gives each worker its offset, the spread
    within a worker stays 0, and each no-op is judged against its parent on its own GPU."""
    monkeypatch.setenv("FAKE_GPU_OFFSET", "1:0.05")  # GPU 1 gives numbers 0.05 higher
    slots = [Slot(0, "0", "NVIDIA A100"), Slot(1, "1", "NVIDIA H100")]

    agents = [ScriptedAgent([edit("no-op on the A100", MATRIX_LR=0.06)]),
              ScriptedAgent([edit("no-op on the H100", MATRIX_LR=0.05)])]
    run_loop(repo, [], slots=slots, agent=agents, noise_runs=3, max_experiments=2)
    noise = load_state(repo, TAG).noise
    assert noise.std == 0.0 and noise.offsets == pytest.approx({"0": -0.025, "1": 0.025})
    assert noise.threshold == 0.0  # the 0.05 between the GPUs is no noise
    rows = {r.device: r for r in tag_rows(repo) if r.kind == "experiment"}
    assert rows["NVIDIA H100"].val_bpb == pytest.approx(1.05)
    for row in rows.values():  # each against its parent's runs on its own model, not the mean
        assert row.status == "discard" and row.reason.startswith("+0.000000 vs parent")
        assert f"on worker {row.worker} ({row.val_bpb:.6f}" in row.reason


def test_gpus_option(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    found = {"0": "NVIDIA H200", "1": "NVIDIA H200", "2": "NVIDIA A100"}
    assert [s.gpu for s in plan_slots("0,0", False, found)] == ["0", "0"]
    assert [s.worker for s in plan_slots("0,1", False, found)] == [0, 1]
    with pytest.raises(UserError, match="mixes GPU models.*--mixed-gpus"):
        plan_slots("all", False, found)
    assert [s.device for s in plan_slots("1,2", True, found)] == ["NVIDIA H200", "NVIDIA A100"]
    with pytest.raises(UserError, match="no GPU 7 here"):
        plan_slots("0,7", False, found)
    with pytest.raises(UserError, match="nvidia-smi lists none"):
        plan_slots("all", False, {})
    assert plan_slots(None, False, {}) == [Slot(0, None, "cpu")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert plan_slots(None, False, found) == [Slot(0, None, "NVIDIA H200")]
    assert [s.gpu for s in plan_slots("all", False, found)] == ["1"]

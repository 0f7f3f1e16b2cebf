"""The decision rule, pure: the noise threshold, the screen against the parent, the paired
confirmation; and the loop against a machine whose speed drifts over the night."""

import pytest
from loop_helpers import check_git_matches_results, edit, make_repo, run_loop, tag_rows

from autoresearch.model import Candidate, Job, Kind, Outcome
from autoresearch.policy import Context, decide, measure, paired, screen

METRICS = {"val_bpb": 0.95, "training_seconds": 1.0, "total_seconds": 2.0, "peak_vram_mb": 1024.0,
           "mfu_percent": 1.0, "total_tokens_M": 0.1, "num_steps": 3.0, "num_params_M": 0.1,
           "depth": 2.0}


def outcome(value=0.95, device="cpu"):
    return Outcome(dict(METRICS, val_bpb=value), "", "cpu", device=device) if value else \
        Outcome(None, "other", "cpu", device=device, log_tail="Traceback...")


def job(kind=Kind.EXPERIMENT, parent="p" * 40, n=5, **kw):
    return Job("j1", kind, 0, "c" * 40, parent, "idea", n=n, run_dir="runs/t/0005-ccccccc", **kw)


def ctx(best="p" * 40, parent_value=1.0, threshold=0.01, candidate=None):
    return Context("t", "2026-11-30T00:00:00+00:00", best, threshold, parent_value, candidate, 2)


def test_threshold_pools_the_spread_within_device_models():
    noise = measure({"A100": [1.0, 1.002], "H100": [1.05, 1.048]}, 0.001, 3)
    assert noise.std == pytest.approx(0.002 / 2 ** 0.5)  # not the 0.05 between the models
    assert noise.threshold == pytest.approx(2 * 0.002 / 2 ** 0.5)
    assert measure({"cpu": [1.0]}, 0.001, 2).rule.startswith("fewer than 2")
    assert measure({"cpu": [1.0, 1.0]}, 0.003, 0).threshold == 0.003
    two_workers = measure({"H200": [1.604826, 1.600978]}, 0.001, 0)  # --noise-runs 0, 2 GPUs
    assert two_workers.threshold == pytest.approx(0.005442, abs=1e-6)
    assert two_workers.rule.startswith("max(floor")  # not "noise runs off"
    assert measure({"cpu": [1.0]}, 0.001, 0).rule == "noise runs off and one worker: floor only"


def test_screen_and_paired():
    assert screen(0.98, 1.0, 0.01) and not screen(0.995, 1.0, 0.01)
    assert screen(1.5, None, 0.01)  # never measured on this model: only the pair can tell
    assert paired([0.98, 0.985], 1.0, 0.01) == (True, pytest.approx(0.0175))
    assert paired([0.98, 1.0], 0.995, 0.01)[0] is False
    # a lucky first run cannot carry a confirmation that lost to the control
    assert paired([0.90, 1.001], 1.0, 0.01) == (False, pytest.approx(0.0495))


def test_a_gain_becomes_a_candidate_with_a_control_and_a_confirmation():
    d = decide(job(), outcome(0.95), ctx())
    assert d.rows == [] and d.hold.n == 5 and d.hold.row.val_bpb == 0.95
    assert [(j.kind, j.commit[0], j.priority, j.subject) for j in d.follow] == [
        (Kind.CONTROL, "p", 0, 5), (Kind.CONFIRM, "c", 0, 5)]


def test_small_gains_and_losses_are_discarded_against_the_parent():
    d = decide(job(), outcome(0.995), ctx())
    assert [r.status for r in d.rows] == ["discard"] and d.tried == {5: "c" * 40}
    assert d.rows[0].reason == "-0.005000 vs parent ppppppp (1.000000)"


def test_confirmation_keeps_only_a_paired_gain():
    cand = Candidate(5, 0, "c" * 40, "p" * 40, decide(job(), outcome(0.95), ctx()).hold.row,
                     control=1.0)
    kept = decide(job(Kind.CONFIRM, n=7, subject=5), outcome(0.96), ctx(candidate=cand))
    assert kept.keep == "c" * 40 and [r.status for r in kept.rows] == ["keep", "keep"]
    assert [r.experiment for r in kept.rows] == [5, 7] and kept.settle == 5
    drifted = Candidate(5, 0, "c" * 40, "p" * 40, cand.row, control=0.95)  # the machine sped up
    lost = decide(job(Kind.CONFIRM, n=7, subject=5), outcome(0.955), ctx(candidate=drifted))
    assert lost.keep is None and "not confirmed" in lost.rows[0].reason
    unlucky = decide(job(Kind.CONFIRM, n=7, subject=5), outcome(1.001), ctx(candidate=cand))
    assert unlucky.keep is None and unlucky.rows[1].reason.endswith("lost to the control")
    moved = decide(job(Kind.CONFIRM, n=7, subject=5), outcome(0.96),
                   ctx(best="b" * 40, candidate=cand))
    assert moved.keep is None and moved.port.n == 5  # beat its parent; the best moved on


def test_a_stale_parent_is_ported_never_compared_with_the_new_best():
    d = decide(job(), outcome(0.95), ctx(best="b" * 40))
    assert d.port.commit == "c" * 40 and d.port.parent == "p" * 40 and d.keep is None
    assert "the best moved to bbbbbbb" in d.rows[0].reason


def test_crashes_ask_for_a_bounded_number_of_fixes():
    d = decide(job(), outcome(None), ctx())
    assert d.rows[0].status == "crash" and d.tasks[0].kind == Kind.FIX and d.tasks[0].attempt == 1
    d = decide(job(Kind.FIX, fix_attempt=2), outcome(None), ctx())
    assert not d.tasks and "giving up" in d.log[0]


@pytest.mark.slow
def test_no_op_edits_are_not_kept_while_the_machine_drifts(tmp_path, monkeypatch):
    """Ten edits that change nothing, on a machine whose speed drifts by +-20 % over the night
    (plus noise): comparing with an old mean of the baseline would keep some of them; the
    paired confirmation keeps none. A real gain larger than the drift is still kept."""
    monkeypatch.setenv("FAKE_COUNTER", str(tmp_path / "counter"))
    monkeypatch.setenv("FAKE_DRIFT", "0.2")
    monkeypatch.setenv("FAKE_DRIFT_PERIOD", "24")
    monkeypatch.setenv("FAKE_NOISE", "0.0015")
    monkeypatch.setenv("FAKE_SEED", "3")
    repo = make_repo(tmp_path / "repo")
    no_ops = [edit(f"no-op {k}", MATRIX_LR=0.05 + 0.01 * k) for k in range(10)]
    run_loop(repo, no_ops + [edit("a real gain", BONUS=-0.03)], noise_runs=2)
    rows = tag_rows(repo)
    kept = [r.description for r in rows if r.status == "keep" and r.kind == "experiment"]
    assert kept == ["a real gain"]
    screened = [r for r in rows if r.kind == "control"]
    assert len(screened) >= 2  # the drift did fool the first look at least once
    check_git_matches_results(repo)

"""The decision rule, pure: the noise threshold, the screen against the parent, the paired
confirmation; and the loop against a machine whose speed drifts over the night."""

import math
import random
import statistics
from dataclasses import replace

import pytest
from loop_helpers import check_git_matches_results, edit, make_repo, run_loop, tag_rows

from autoresearch.model import Candidate, Job, Kind, Outcome
from autoresearch.policy import (
    Context,
    Rule,
    Run,
    crossover,
    decide,
    fit,
    judge_runs,
    min_detectable_gain,
    pair_gain,
    screen_run,
    sequential,
    t_quantile,
    t_tail,
)

METRICS = {"val_bpb": 0.95, "training_seconds": 1.0, "total_seconds": 2.0, "peak_vram_mb": 1024.0,
           "mfu_percent": 1.0, "total_tokens_M": 0.1, "num_steps": 3.0, "num_params_M": 0.1,
           "depth": 2.0}


def outcome(value=0.95, device="cpu"):
    return Outcome(dict(METRICS, val_bpb=value), "", "cpu", device=device) if value else \
        Outcome(None, "other", "cpu", device=device, log_tail="Traceback...")


def job(kind=Kind.EXPERIMENT, parent="p" * 40, n=5, **kw):
    return Job("j1", kind, 0, "c" * 40, parent, "idea", n=n, run_dir="runs/t/0005-ccccccc", **kw)


PARENT = fit([Run("ppppppp", "0", v) for v in (0.999, 1.001, 0.999, 1.001, 1.0)])  # std 0.001


PAIRED = Rule(controls=True)  # --controls: replicas are (control, candidate) pairs


def test_controls_screen_a_first_run_at_two_standard_errors_as_simulated():
    """--controls runs pairs only after a first run past 2 standard errors (the paired rule's
    setting in the simulated nights), the candidate's own runs stop at 1.75: a first run 1.9
    standard errors better goes on to runs of itself, not to pairs."""
    se = (0.001 ** 2 + 0.001 ** 2 / 5) ** 0.5  # one run's, and the parent's value's
    value = 1.0 - 1.9 * se
    assert not screen_run(value, "0", "ppppppp", PARENT, PAIRED).go_on
    assert screen_run(value, "0", "ppppppp", PARENT, Rule(controls=True, screen_z=1.75)).go_on
    assert (Rule().screen_z, PAIRED.screen_z) == (1.75, 2.0)


def ctx(best="p" * 40, model=PARENT, candidate=None, rule=PAIRED):
    return Context("t", "2026-11-30T00:00:00+00:00", best, model, rule, candidate, 2)


def test_a_gain_becomes_a_candidate_with_a_control_and_a_confirmation():
    d = decide(job(), outcome(0.95), ctx())
    assert d.rows == [] and d.hold.n == 5 and d.hold.row.val_bpb == 0.95
    assert [(j.kind, j.commit[0], j.priority, j.subject) for j in d.follow] == [
        (Kind.CONTROL, "p", 0, 5), (Kind.CONFIRM, "c", 0, 5)]
    assert decide(job(), outcome(1.5), ctx(model=fit([]))).hold.n == 5  # parent never measured


def test_small_gains_and_losses_are_discarded_against_the_parent():
    d = decide(job(), outcome(1.005), ctx())
    assert [r.status for r in d.rows] == ["discard"] and d.tried == {5: "c" * 40}
    assert d.rows[0].reason.startswith("+0.005000 vs parent ppppppp on worker 0 (1.000000 +- ")
    assert decide(job(), outcome(0.9995), ctx()).rows[0].status == "discard"  # within the noise


def test_a_higher_is_better_metric_reads_its_reason_in_its_own_units():
    """Runs hold a loss (the negated accuracy); the reason shows the accuracy the right way up:
    0.995 against a parent of 1.000 is 0.005 lower, under both rules."""
    for rule in (PAIRED, Rule()):
        model = fit([Run("ppppppp", "0", -v) for v in (0.999, 1.001, 0.999, 1.001, 1.0)])
        context = replace(ctx(model=model, rule=rule), shown=lambda loss: -loss)
        (row,) = decide(job(), outcome(-0.995), context).rows
        assert row.status == "discard"
        assert row.reason.startswith("-0.005000 vs parent ppppppp on worker 0 (1.000000 +- ")


def confirmed(value, control=1.0, gains=(), **kw):
    cand = Candidate(5, 0, "c" * 40, "p" * 40, decide(job(), outcome(0.95), ctx()).hold.row,
                     control=control, gains=list(gains))
    return decide(job(Kind.CONFIRM, n=7, subject=5), outcome(value), ctx(candidate=cand, **kw))


def test_confirmation_keeps_only_a_paired_gain_with_its_evidence():
    kept = confirmed(0.96)
    assert kept.keep == "c" * 40 and [r.status for r in kept.rows] == ["keep", "keep"]
    assert [r.experiment for r in kept.rows] == [5, 7] and kept.settle == 5
    first = kept.rows[0]
    assert (first.pairs, first.gain) == (1, pytest.approx(0.04)) and first.p_value < 0.05
    assert first.gain_low > 0 and first.gain_high > first.gain
    assert "confirmed: +0.040000 over 1 pair [" in first.reason
    lost = confirmed(0.955, control=0.95)  # the machine sped up: the pair shows no gain
    assert lost.keep is None and "not confirmed" in lost.rows[0].reason
    assert lost.rows[0].pairs == 1 and lost.rows[0].gain == pytest.approx(-0.005)
    moved = confirmed(0.96, best="b" * 40)
    assert moved.keep is None and moved.port.n == 5  # beat its parent; the best moved on


def test_the_grey_zone_gets_one_more_pair_up_to_the_cap():
    grey = confirmed(0.999)
    assert grey.keep is None and grey.settle is None and grey.hold.gains == [pytest.approx(0.001)]
    assert grey.hold.control is None and [r.experiment for r in grey.rows] == [7]
    assert [j.kind for j in grey.follow] == [Kind.CONTROL, Kind.CONFIRM]
    assert "pair 1 of #5" in grey.rows[0].reason and grey.rows[0].status == "discard"
    last = confirmed(0.999, gains=[0.001, 0.001])
    assert last.keep is None and last.settle == 5 and last.rows[0].pairs == 3
    six = Rule(max_pairs=6, controls=True)
    assert confirmed(0.999, gains=[0.001, 0.001], rule=six).hold is not None


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
    (plus noise): comparing with an old mean of the baseline would keep some of them (the default
    rule's fitted parent value included: this is what --controls is for); the paired
    confirmation keeps none. A real gain larger than the drift is still kept."""
    monkeypatch.setenv("FAKE_COUNTER", str(tmp_path / "counter"))
    monkeypatch.setenv("FAKE_DRIFT", "0.2")
    monkeypatch.setenv("FAKE_DRIFT_PERIOD", "24")
    monkeypatch.setenv("FAKE_NOISE", "0.0015")
    monkeypatch.setenv("FAKE_SEED", "3")
    repo = make_repo(tmp_path / "repo")
    no_ops = [edit(f"no-op {k}", MATRIX_LR=0.05 + 0.01 * k) for k in range(10)]
    run_loop(repo, no_ops + [edit("a real gain", BONUS=-0.03)], noise_runs=2, controls=True)
    rows = tag_rows(repo)
    kept = [r.description for r in rows if r.status == "keep" and r.kind == "experiment"]
    assert kept == ["a real gain"]
    screened = [r for r in rows if r.kind == "control"]
    assert len(screened) >= 2  # the drift did fool the first look at least once
    check_git_matches_results(repo)


# ---- the noise model and the sequential paired test

def simulate(rng, commits, workers, offsets, std, runs_each):
    """Runs of each (commit, true value) on every worker, runs_each times."""
    return [Run(c, w, v + offsets[w] + rng.gauss(0, std))
            for c, v in commits for w in workers for _ in range(runs_each)]


def test_the_fit_separates_worker_offsets_from_the_noise():
    rng = random.Random(1)
    offsets = {"0": 0.004, "1": -0.004}  # GPU 1 trains more steps: systematically lower
    model = fit(simulate(rng, [("base", 1.0), ("next", 0.99)], ["0", "1"], offsets, 0.0003, 6))
    assert model.offsets["0"] - model.offsets["1"] == pytest.approx(0.008, abs=0.0005)
    assert sum(model.offsets.values()) == pytest.approx(0.0, abs=1e-12)
    assert model.within_std == pytest.approx(0.0003, rel=0.35)  # not the 0.004 between GPUs
    assert model.dof == 24 - 2 - 1
    assert model.values["next"] - model.values["base"] == pytest.approx(-0.01, abs=0.0005)
    assert model.ses["base"] == pytest.approx(model.within_std / math.sqrt(12), rel=0.01)
    single = fit([Run("base", "0", 1.0)])
    assert single.within_std is None and single.dof == 0 and single.values == {"base": 1.0}
    assert fit([]).offsets == {}


def test_a_fixed_gpu_offset_does_not_inflate_the_smallest_keepable_gain():
    rule = Rule()
    quiet = fit(simulate(random.Random(2), [("base", 1.0)], ["0", "1"], {"0": 0, "1": 0},
                         0.0003, 4))
    offset = fit(simulate(random.Random(2), [("base", 1.0)], ["0", "1"],
                          {"0": 0.005, "1": -0.005}, 0.0003, 4))
    assert min_detectable_gain(offset.within_std, rule) == \
        pytest.approx(min_detectable_gain(quiet.within_std, rule), rel=1e-6)
    assert min_detectable_gain(0.0003, rule) < 0.001  # below the old fixed floor
    assert min_detectable_gain(None, rule) is None
    assert min_detectable_gain(0.0003, Rule(max_pairs=6)) < min_detectable_gain(0.0003, rule)
    # a parent known less well, or pairs (two runs a look), need a larger gain
    assert min_detectable_gain(0.0003, rule, parent_se=0.0002) > min_detectable_gain(0.0003, rule)
    assert min_detectable_gain(0.0003, PAIRED) > min_detectable_gain(0.0003, rule)


def decide_by_pairs(rng, gain, std, rule, offsets=(0.0, 0.0)):
    """One candidate judged by the sequential test: (action, pairs used)."""
    gains = []
    while True:
        control = 1.0 + offsets[0] + rng.gauss(0, std)
        candidate = 1.0 - gain + offsets[1] + rng.gauss(0, std)
        gains.append(pair_gain(control, candidate, offsets[0], offsets[1]))
        verdict = sequential(gains, std, rule)
        if verdict.action != "more":
            return verdict.action, verdict.pairs


def test_a_no_op_is_kept_alpha_of_the_time_and_a_real_gain_is_kept():
    rng, rule, std = random.Random(3), PAIRED, 0.0003
    no_op = [decide_by_pairs(rng, 0.0, std, rule, (0.004, -0.004)) for _ in range(4000)]
    # the exact boundary spends all of alpha (Bonferroni kept 2.6 % here)
    rate = sum(a == "keep" for a, _ in no_op) / len(no_op)
    assert abs(rate - rule.alpha) <= 3 * math.sqrt(rule.alpha * (1 - rule.alpha) / len(no_op))
    assert all(n <= rule.max_pairs for _, n in no_op)
    assert statistics.fmean(n for _, n in no_op) < 2  # futility stops most of them early
    smallest = min_detectable_gain(std, rule)
    real = [decide_by_pairs(rng, smallest, std, rule) for _ in range(2000)]
    assert sum(a == "keep" for a, _ in real) / len(real) >= rule.power - 0.05
    clear = [decide_by_pairs(rng, 10 * std, std, rule) for _ in range(200)]
    assert all(a == "keep" and n == 1 for a, n in clear)  # a clear win stops after one pair


def test_the_verdict_states_its_evidence_and_respects_the_floor():
    rule = Rule(floor=0.001, controls=True)
    verdict = sequential([0.0012], 0.0001, rule)
    assert verdict.action == "discard" or verdict.low <= 0.001
    kept = sequential([0.003, 0.0032], 0.0001, rule)
    assert kept.action == "keep" and kept.low > 0.001 and kept.p < rule.alpha
    assert kept.describe().startswith("+0.003100 over 2 pairs [")
    assert sequential([-0.001], 0.0003, PAIRED).action == "discard"  # futility
    assert sequential([0.0003], 0.0003, PAIRED).action == "more"  # the grey zone
    assert sequential([0.0003] * 3, 0.0003, PAIRED).action == "discard"  # pairs used up
    # no measured spread: one pair never keeps; two pairs use their own spread
    assert sequential([0.5], None, PAIRED).action == "more"
    assert sequential([0.5, 0.52], None, PAIRED).action == "keep"
    assert sequential([0.0, 0.0], 0.0, PAIRED).action == "discard"  # exact ties keep nothing


def test_the_screen_compares_with_the_parent_on_the_same_worker():
    rng = random.Random(4)
    model = fit(simulate(rng, [("base", 1.0)], ["0", "1"], {"0": 0.004, "1": -0.004}, 0.0003, 3))
    rule = Rule()
    # 0.998 on GPU 1 is a loss there (the parent runs about 0.996), though it beats GPU 0's runs
    assert not screen_run(0.998, "1", "base", model, rule).go_on
    win = screen_run(0.994, "1", "base", model, rule)
    assert win.go_on and win.gain == pytest.approx(0.002, abs=0.0005)
    assert screen_run(2.0, "0", "never ran", model, rule).go_on  # only pairs can tell


def test_the_p_value_agrees_with_the_boundary_whatever_the_degrees_of_freedom():
    for dof in (None, 1, 2, 3, 5, 9, 40):
        for p in (0.6, 0.9, 0.975, 1 - 0.05 / 3, 0.999):
            assert t_tail(t_quantile(p, dof), dof) == pytest.approx(1 - p, rel=1e-6)
    assert t_quantile(0.975, None) == pytest.approx(1.959964, abs=1e-6)
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)  # the tables' values
    assert t_quantile(0.975, 2) == pytest.approx(4.3027, abs=1e-3)
    assert t_quantile(0.975, 10) == pytest.approx(2.2281, abs=2e-3)
    rule = Rule(max_pairs=4, controls=True)
    for gains in ([0.001] * 4, [0.0012, 0.0009, 0.001, 0.0011], [0.002, 0.0005]):
        verdict = sequential(gains, 0.00055, rule, dof=9)
        assert (verdict.p < rule.alpha) == (verdict.low > rule.floor) == \
            (verdict.action == "keep")


def test_a_ports_own_run_is_the_first_half_of_its_first_pair():
    """A port was not picked for looking good, so its run pairs with the control that follows:
    one run saved per port. A clear loser still stops at once."""
    held = decide(job(Kind.PORT), outcome(0.95), ctx())
    assert held.hold.pending == 0.95 and [j.kind for j in held.follow] == [Kind.CONTROL]
    control = job(Kind.CONTROL, n=6, subject=5)
    control.commit = control.parent  # a control runs the parent's code
    kept = decide(control, outcome(1.0), ctx(candidate=held.hold))
    assert kept.keep == "c" * 40 and kept.settle == 5
    assert [(r.experiment, r.status) for r in kept.rows] == [(5, "keep"), (6, "discard")]
    assert kept.rows[0].pairs == 1 and kept.rows[0].gain == pytest.approx(0.05)
    assert kept.tried == {}  # kept: on the branch itself
    grey = decide(control, outcome(1.0), ctx(candidate=decide(job(Kind.PORT), outcome(0.9995),
                                                               ctx()).hold))
    assert grey.hold.pending is None and grey.hold.gains == [pytest.approx(0.0005)]
    assert [(j.kind, j.commit[0]) for j in grey.follow] == [(Kind.CONTROL, "p"),
                                                            (Kind.CONFIRM, "c")]
    one = Rule(max_pairs=1, controls=True)
    lost = decide(control, outcome(1.0), ctx(candidate=decide(job(Kind.PORT), outcome(0.9995),
                                                              ctx(rule=one)).hold, rule=one))
    assert lost.keep is None and lost.tried == {5: "c" * 40} and lost.rows[0].pairs == 1
    assert decide(job(Kind.PORT), outcome(1.001), ctx()).rows[0].status == "discard"
    crashed = decide(control, outcome(None), ctx(candidate=held.hold))
    assert crashed.settle == 5 and "not confirmed: its control run #6 crashed" in \
        crashed.rows[0].reason


# ---- the default rule: the candidate's own runs against its parent's fitted value

def test_the_gain_between_two_commits_counts_the_offsets_they_share_once():
    model = fit([Run("a", "0", 1.0), Run("a", "0", 1.001), Run("a", "1", 1.005),
                 Run("b", "1", 0.999)])
    gain, se = model.gain("b", "a")  # b ran on GPU 1 only, where a runs 1.005
    assert gain == pytest.approx(0.006) and se == pytest.approx(model.within_std * math.sqrt(2))
    more = model.plus(Run("b", "0", 0.998))
    assert more.gain("b", "a")[0] == pytest.approx(0.004)  # 0.9985 against 1.0025 on GPU 0
    assert fit([Run("a", "0", 1.0), Run("b", "0", 0.9)]).gain("b", "a") == \
        pytest.approx((0.1, math.inf))  # no spread known


def judge_by_runs(rng, gain, std, rule, offsets=(0.004, -0.004), parent_runs=3):
    """One candidate judged run by run against a parent run parent_runs times on each of two
    GPUs; the candidate runs on GPU 1. (action, the candidate's runs)."""
    runs = [Run("p", str(w), 1.0 + offsets[w] + rng.gauss(0, std)) for w in (0, 1)
            for _ in range(parent_runs)]
    while True:
        runs.append(Run("c", "1", 1.0 - gain + offsets[1] + rng.gauss(0, std)))
        verdict = judge_runs(fit(runs), "c", "p", rule)
        if verdict.action != "more":
            return verdict.action, verdict.pairs


def test_a_no_op_judged_by_its_runs_is_kept_alpha_of_the_time():
    rng, rule, std = random.Random(5), Rule(), 0.0003
    # a parent run 10 times on each GPU: a spread of 18 degrees of freedom (at 4 the rate was
    # 3.6 % for 3 %: the spread's estimate moves between looks, which the boundary ignores)
    no_op = [judge_by_runs(rng, 0.0, std, rule, parent_runs=10) for _ in range(3000)]
    rate = sum(a == "keep" for a, _ in no_op) / len(no_op)
    assert abs(rate - rule.alpha) <= 3 * math.sqrt(rule.alpha * (1 - rule.alpha) / len(no_op))
    assert all(n <= rule.looks for _, n in no_op) and rule.looks == 4
    assert statistics.fmean(n for _, n in no_op) < 1.5  # futility stops most at once
    clear = [judge_by_runs(rng, 10 * std, std, rule) for _ in range(200)]
    assert all(a == "keep" and n == 1 for a, n in clear)  # a clear win: its first run decides
    small = [judge_by_runs(rng, 4 * std, std, rule, parent_runs=8) for _ in range(500)]
    assert sum(a == "keep" for a, _ in small) / len(small) >= 0.8


def test_the_runs_verdict_states_its_evidence_and_never_keeps_without_a_spread():
    model = fit([Run("p", "0", v) for v in (0.999, 1.001, 0.999, 1.001, 1.0)])
    kept = judge_runs(model.plus(Run("c", "0", 0.99)), "c", "p", Rule())
    assert kept.action == "keep" and kept.pairs == 1 and kept.p < 0.05 and kept.low > 0
    assert kept.describe().startswith("+0.010000 over 1 run [")
    assert judge_runs(model.plus(Run("c", "0", 1.0)), "c", "p", Rule()).action == "discard"
    floor = judge_runs(model.plus(Run("c", "0", 0.99)), "c", "p", Rule(floor=0.02))
    assert floor.action == "discard"  # a clear gain, but below the user's minimum
    alone = fit([Run("p", "0", 1.0), Run("c", "0", 0.5)])
    assert judge_runs(alone, "c", "p", Rule()).action == "more"  # no spread: run it again
    assert judge_runs(alone, "c", "p", Rule(max_pairs=0)).action == "discard"
    worse = fit([Run("p", "0", 1.0), Run("c", "0", 1.5)])
    assert judge_runs(worse, "c", "p", Rule()).action == "discard"  # lost: no second run
    assert judge_runs(alone, "c", "never ran", Rule()).action == "discard"


def test_a_look_states_its_own_one_sided_p_value_against_the_floor():
    # the simulator's online FDR procedures read a test's first look by it
    model = fit([Run("p", "0", v) for v in (0.999, 1.001, 0.999, 1.001, 1.0)])
    rule = Rule(drift_std=0.0)
    seen = model.plus(Run("c", "0", 0.997))
    gain, se = seen.gain("c", "p")
    verdict = judge_runs(seen, "c", "p", rule)
    assert verdict.tail == pytest.approx(t_tail((gain - rule.floor) / se, seen.dof))
    assert 0.01 < verdict.tail < 0.5 < judge_runs(model.plus(Run("c", "0", 1.002)), "c", "p",
                                                    rule).tail
    assert judge_runs(fit([Run("p", "0", 1.0), Run("c", "0", 0.5)]), "c", "p", rule).tail == 1


def test_a_first_run_decides_or_asks_for_one_more_run_of_itself():
    kept = decide(job(), outcome(0.95), ctx(rule=Rule()))
    assert kept.keep == "c" * 40 and [r.status for r in kept.rows] == ["keep"]
    assert kept.rows[0].pairs == 1 and kept.rows[0].gain == pytest.approx(0.05)
    assert "on its first run: +0.050000 over 1 run [" in kept.rows[0].reason
    lost = decide(job(), outcome(1.0), ctx(rule=Rule()))
    assert lost.keep is None and lost.rows[0].status == "discard" and lost.tried == {5: "c" * 40}
    grey = decide(job(), outcome(0.9975), ctx(rule=Rule()))  # 2.3 se: between 1.5 and the boundary
    assert grey.rows == [] and grey.hold.n == 5 and grey.hold.control is None
    assert [(j.kind, j.commit[0], j.subject) for j in grey.follow] == [(Kind.CONFIRM, "c", 5)]
    moved = decide(job(), outcome(0.9975), ctx(best="b" * 40, rule=Rule()))
    assert moved.port.n == 5 and moved.keep is None  # the best moved: re-applied there


def test_replicas_of_the_candidate_decide_within_the_cap():
    grey = decide(job(), outcome(0.9975), ctx(rule=Rule())).hold
    confirm = job(Kind.CONFIRM, n=7, subject=5)
    kept = decide(confirm, outcome(0.997), ctx(candidate=grey, rule=Rule()))
    assert kept.keep == "c" * 40 and [(r.experiment, r.status) for r in kept.rows] == [
        (5, "keep"), (7, "keep")]
    assert kept.rows[0].pairs == 2 and kept.rows[0].gain == pytest.approx(0.00275)
    assert "vs its parent's fitted value" in kept.rows[0].reason
    again = decide(confirm, outcome(0.999), ctx(candidate=grey, rule=Rule()))
    assert again.hold is grey and [j.kind for j in again.follow] == [Kind.CONFIRM]
    assert again.rows[0].reason.startswith("run 2 of #5: ") and again.tried == {7: "c" * 40}
    crashed = decide(confirm, outcome(None), ctx(candidate=grey, rule=Rule()))
    assert crashed.settle == 5 and "not confirmed" in crashed.rows[0].reason


def test_a_crossover_puts_the_pairs_halves_on_two_workers_and_swaps_them():
    row = decide(job(), outcome(0.95), Context("t", "now", "p" * 40, PARENT, PAIRED, None, 3,
                                               workers=3)).hold.row
    cand = Candidate(5, 2, "c" * 40, "p" * 40, row)
    assert crossover(cand, 1) == (0, 0)  # one worker (a resumed loop may have fewer): in a row
    assert crossover(cand, 3) == (2, 0)  # the candidate on its worker, the control on the next
    assert crossover(replace(cand, gains=[0.001]), 3) == (0, 2)  # the next pair: swapped
    follow = decide(job(), outcome(0.95), Context("t", "now", "p" * 40, PARENT, PAIRED, None, 3,
                                                  workers=2)).follow
    assert [(j.kind, j.worker) for j in follow] == [(Kind.CONTROL, 1), (Kind.CONFIRM, 0)]

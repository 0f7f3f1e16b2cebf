"""policy.judge_runs on a drifting machine: the parent's fitted value is older than the
candidate's run, and the gain's standard error grows with that age (Rule.drift_std)."""

from autoresearch.policy import Rule, Run, evidence_age, fit, judge_runs

PARENT = [Run("p", "0", v) for v in (0.999, 1.001, 0.999, 1.001, 1.0)]  # spread 0.001


def test_an_old_parent_value_does_not_keep_what_the_drift_since_could_explain():
    fresh = fit([*PARENT, Run("c", "0", 0.995)])
    # 60 runs of other commits ended between the parent's last run and the candidate's
    old = fit([*PARENT, *(Run(f"x{k}", "0", 1.0) for k in range(60)), Run("c", "0", 0.995)])
    assert evidence_age(fresh, "c", "p") == 3  # run 5 against the mean of runs 0..4
    assert evidence_age(old, "c", "p") == 63
    rule = Rule(drift_std=0.0003)
    assert judge_runs(fresh, "c", "p", rule).action == "keep"
    assert judge_runs(old, "c", "p", rule).action == "more"  # run it again, no keep yet
    assert judge_runs(old, "c", "p", Rule(drift_std=0.0)).action == "keep"


def test_the_workers_share_the_runs_in_between():
    # two workers: 40 runs in between are 20 steps of each worker's walk
    between = [Run(f"x{k}", str(k % 2), 1.0) for k in range(40)]
    runs = [*PARENT, Run("p", "1", 1.0), *between, Run("c", "1", 0.995)]
    assert evidence_age(fit(runs), "c", "p") == (46 - 2.5) / 2

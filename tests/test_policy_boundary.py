"""policy.exact_boundary: one constant boundary over a candidate's correlated looks, solved so
that a change whose true gain is the floor is kept exactly alpha of the time, futility binding
(Bonferroni's alpha / looks a look kept far less)."""

import math
import random

import numpy as np
import pytest

from autoresearch.policy import (
    Rule,
    Run,
    _seeded,
    exact_boundary,
    fit,
    judge_runs,
    t_quantile,
)


def kept_by_simulation(c: float, futility_z: float, share: float, looks: int, dof: int | None,
                       draws: int = 400_000) -> float:
    """P(keep) of the sequential test by brute force: the parent's error (its share of a first
    look's variance), the candidate's runs' running mean, one spread estimate for all looks."""
    rng = np.random.default_rng(11)
    parent = rng.normal(0.0, math.sqrt(share), draws)
    means = np.cumsum(rng.normal(0.0, math.sqrt(1 - share), (draws, looks)), axis=1) / \
        np.arange(1, looks + 1)
    spread = np.sqrt(rng.chisquare(dof, draws) / dof) if dof else np.ones(draws)
    kept, going = np.zeros(draws, bool), np.ones(draws, bool)
    for k in range(looks):
        z = (parent - means[:, k]) / math.sqrt(share + (1 - share) / (k + 1)) / spread
        kept |= going & (z > c)
        going &= (z > futility_z) & (z <= c)
    return float(kept.mean())


@pytest.mark.parametrize(("share", "dof"), [(0.0, None), (0.4, None), (0.2, 5), (0.6, 30)])
def test_the_boundary_keeps_a_change_at_the_floor_alpha_of_the_time(share, dof):
    rule = Rule()
    c = exact_boundary(rule.alpha, rule.looks, rule.futility_z, share, dof)
    assert abs(kept_by_simulation(c, rule.futility_z, share, rule.looks, dof) - rule.alpha) < 0.0015
    # between one look at alpha and Bonferroni's alpha / looks
    assert t_quantile(1 - rule.alpha, dof) < c < t_quantile(1 - rule.alpha / rule.looks, dof)
    bonferroni = Rule(exact=False).boundary(dof)
    assert kept_by_simulation(bonferroni, rule.futility_z, share, rule.looks, dof) < \
        0.8 * rule.alpha


def test_one_look_or_no_grey_zone_is_the_one_sided_test():
    assert exact_boundary(0.05, 1, 1.5, 0.0, None) == pytest.approx(1.644854)
    assert exact_boundary(0.05, 3, 2.0, 0.3, None) == pytest.approx(1.644854)  # 1.64 < 2


def test_the_boundary_never_falls_below_the_exact_one_between_grid_points():
    rule = Rule()
    for share in (0.0, 0.013, 0.37, 0.999):
        for dof in (None, 3, 13, 57, 5000):
            assert rule.boundary(dof, share) >= exact_boundary(
                rule.alpha, rule.looks, rule.futility_z, share, dof) - 1e-4
    assert rule.boundary(0) == math.inf


def test_a_gain_bonferroni_ran_again_is_kept_on_its_first_run():
    rng = random.Random(2)
    parent = [Run("p", "0", 1.0 + rng.gauss(0, 0.0003)) for _ in range(12)]
    model = fit([*parent, Run("c", "0", 0.9992)])  # 2.35 standard errors, 11 dof
    before = Rule(alpha=0.05, screen_z=1.5, exact=False)  # the default before: 0.05 / 3 a look
    exact = judge_runs(model, "c", "p", Rule(alpha=0.05, screen_z=1.5))  # the same stated rate
    bonferroni = judge_runs(model, "c", "p", before)
    assert exact.action == "keep" and exact.p < before.alpha
    assert bonferroni.action == "more" and bonferroni.p >= before.alpha
    assert exact.mean == bonferroni.mean and exact.low > bonferroni.low


def test_the_integration_is_seeded_under_whatever_name_this_scipy_takes():
    """scipy 1.15 (the lock's on Python 3.10) takes no seed for the multivariate normal, 1.17
    names it `rng` there and `random_state` for the t: the boundary must be computable on all."""
    def rng(x, *, lower_limit=None, rng=None): ...
    def old(x, *, lower_limit=None, random_state=None): ...
    def none(x, *, lower_limit=None): ...
    assert [_seeded(f) for f in (rng, old, none)] == [{"rng": 0}, {"random_state": 0}, {}]

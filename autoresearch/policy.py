"""How much better is better, and what a finished run means. Pure: no git, no files, no clock.

Noise. The same train.py does not give the same val_bpb twice (data order, kernels, step counts
that depend on speed, the load of the other workers), and one GPU is not another: with a fixed
time budget a GPU that runs a little faster trains more steps, on every run. So each run is

    value = code effect (per commit) + worker effect (per GPU slot) + noise

fitted by least squares over every measured run of the tag (fit). The worker offsets sum to
zero; the residual std (within_std) is the noise. The first wave runs the unmodified code on
every worker at once (whole rounds, at least 1 + --noise-runs runs), so the spread includes the
load the workers put on each other; every replica refits it during the night.

Judging agent code. A run is compared with its own parent (the best it was proposed on) only,
by a sequential test with at most Rule.looks looks:

  1. each run of the candidate, its first included, goes into the fit; the test takes the
     candidate's fitted value against its parent's (both corrected by the worker offsets, the
     parent's own uncertainty included: judge_runs). A gain past the boundary is kept (a clear
     win on its first run); one within Rule.screen_z standard errors of the floor is discarded
     (clear losers stop at once); the grey zone runs the candidate again, up to --max-pairs
     more runs (3 by default), each on whichever worker is free first, ahead of new ideas (the
     coordinator prefers a worker that has not run it: the fit learns the offsets it corrects it
     by). One boundary holds for every look, the first included (exact_boundary): solved from
     the looks' correlation (they share the parent's value) with the futility stop counted, so a
     change at the floor is kept alpha (1.5 % by default) of the time over all its looks, and a
     no-op picked for a lucky first run at most that.
     One run a look instead of a pair: the parent's value is known from all its runs, and in the
     simulated nights of BENCHMARKS.md this captured more of the gain than pairs did.
  2. with --controls (a machine that drifts fast), replicas are pairs instead: on one worker
     the parent runs again (control), then the candidate (confirm), so offsets and drift cancel;
     with several workers the pair is a crossover: the candidate on its worker and the control
     on the next, both queued ahead of new ideas, swapped at the next pair, each pair's gain
     corrected by the two workers' fitted offsets (which also cancel over the swapped pairs).
     The first run is only a screen (screen_run) and not one of the pairs, since it was chosen
     for looking good; after each pair the same test on the mean paired gain (sequential),
     at alpha 5 %, stopping at no gain over the floor.

A change that beat its parent after another worker moved the best is re-applied onto the new best
(a three-way merge of train.py) and that code runs and is judged in turn: no keep is ever decided
by numbers measured on different parents. With --controls, a port's own run was not picked for
looking good, so unless it lost to its parent it is the candidate's half of its first pair (only
a control follows).
"""

from __future__ import annotations

import bisect
import functools
import inspect
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np

from autoresearch.execution.parse import FIXABLE_REASONS
from autoresearch.model import (
    Candidate,
    Decision,
    Job,
    Kind,
    Outcome,
    Port,
    Row,
    Task,
    row_for,
)
from autoresearch.names import (
    DEFAULT_DRIFT_STD,
    DEFAULT_FLOOR,
    MAX_REPLICAS_PAIRS,
    MAX_REPLICAS_RUNS,
)


def signed(value: float, digits: int = 6) -> str:
    """A change with its sign; one that rounds to zero is +0.000000, never -0.000000 (which
    would read as a gain)."""
    text = f"{value:+.{digits}f}"
    return text if float(text) != 0 else f"{0.0:+.{digits}f}"


# ---- the noise model and the sequential paired test (pure; the simulator in scripts/ drives them)

NORMAL = NormalDist()


@dataclass(frozen=True)
class Run:
    """One finished run as the noise model sees it."""

    commit: str
    worker: str  # one GPU slot: its own fixed offset (clock, cooling, device model)
    value: float  # val_bpb


@dataclass
class Fit:
    """value = code effect (per commit) + worker offset (per worker, summing to zero) + noise."""

    values: dict[str, float]  # commit -> its value on the average worker
    ses: dict[str, float]  # commit -> standard error of that value (inf while std is unknown)
    offsets: dict[str, float]  # worker -> what it adds to every run
    within_std: float | None  # residual std of one run: None without a repeated commit
    dof: int  # residual degrees of freedom behind within_std
    runs: list[Run] = field(default_factory=list)  # what it was fitted to
    # the covariance of the commits' values (in the order of `values`), in units of the run
    # variance within_std ** 2
    cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    def gain(self, candidate: str, parent: str) -> tuple[float, float]:
        """The candidate's gain over its parent (their values' difference; > 0 is better) and its
        standard error: both values come from one fit, so the offsets that both depend on
        count once (inf while the spread is unknown)."""
        gain = self.values[parent] - self.values[candidate]
        if self.within_std is None:
            return gain, math.inf
        order = list(self.values)
        p, c = order.index(parent), order.index(candidate)
        var = self.cov[p, p] + self.cov[c, c] - 2 * self.cov[p, c]
        return gain, self.within_std * math.sqrt(max(var, 0.0))

    def plus(self, *runs: Run) -> Fit:
        """The model refitted with these runs added (a run not in results.tsv yet)."""
        return fit([*self.runs, *runs])


def fit(runs: list[Run]) -> Fit:
    """Least squares over all runs: one value per commit, one offset per worker (sum to zero),
    and the spread left within them. A commit run once fits itself exactly and adds nothing to
    the spread, so only commits run more than once or on more than one worker inform it."""
    commits = sorted({r.commit for r in runs})
    workers = sorted({r.worker for r in runs})
    if not runs:
        return Fit({}, {}, {}, None, 0)
    x = np.zeros((len(runs), len(commits) + len(workers) - 1))
    for i, r in enumerate(runs):
        x[i, commits.index(r.commit)] = 1.0
        w = workers.index(r.worker)
        if w < len(workers) - 1:
            x[i, len(commits) + w] = 1.0
        else:  # effect coding: the last worker's offset is minus the sum of the others
            x[i, len(commits):] = -1.0
    y = np.array([r.value for r in runs])
    beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    dof = len(runs) - int(rank)
    rss = float(np.sum((y - x @ beta) ** 2))
    std = _clean(math.sqrt(rss / dof)) if dof > 0 else None
    free = list(beta[len(commits):])
    offsets = dict(zip(workers, [*free, -sum(free)], strict=True))
    cov = np.linalg.pinv(x.T @ x)
    ses = {c: std * math.sqrt(max(cov[i, i], 0.0)) if std is not None else math.inf
           for i, c in enumerate(commits)}
    return Fit({c: _clean(beta[i]) for i, c in enumerate(commits)}, ses,
               {w: _clean(o) for w, o in offsets.items()}, std, dof, list(runs),
               cov[:len(commits), :len(commits)])


def _clean(x: float) -> float:
    """Rounded to 1e-12: val_bpb has six decimals, anything finer is the solver's float residue
    (identical runs must show a spread and offsets of exactly 0)."""
    return round(float(x), 12) + 0.0  # + 0.0: no -0.0


# The default false-keep rates. The exact boundary keeps a change at the floor alpha of the time;
# changes slightly worse than the floor outnumber real gains, so the share of false keeps among
# keeps grows with the machine's noise. In the simulated nights (BENCHMARKS.md) 0.015 held it
# under 5 % on 1-8 workers at run-to-run stds of 0.0003-0.0009 (what real H100s showed); 0.03
# kept 6-9 % false at 0.0009 and 0.02 5.7 % on 8 workers. Pairs keep under 0.5 % false at 0.05.
ALPHA_RUNS = 0.015
ALPHA_PAIRS = 0.05
# The screens: the candidate's own runs stop at or below 1.75 standard errors over the floor (the
# simulator's sweep at the exact boundary: 1.5 gives up small gains, 2 keeps more slightly harmful
# changes on 8 workers); a pair follows a first run only past 2 (the paired rule's sweep)
SCREEN_Z_RUNS = 1.75
SCREEN_Z_PAIRS = 2.0


@dataclass(frozen=True)
class Rule:
    """How sure a keep must be. alpha: the chance that a change with no true gain above the floor is
    kept (None: ALPHA_RUNS, or ALPHA_PAIRS with controls); power: the chance of keeping a change of
    min_detectable_gain; max_pairs: the most replicas one candidate gets after its first run (single
    runs of it, or with controls, (control, candidate) pairs); floor: the user's minimum gain;
    screen_z: a candidate goes on only while its gain exceeds this many standard errors (lower:
    fewer real gains lost early, more runs spent on replicas); controls: replicas are pairs with a
    control run of the parent (robust to a machine that drifts fast, at twice the runs) instead of
    single runs of the candidate against the parent's fitted value; drift_std: the drift a run
    allowed for when the parent's runs are older than the candidate's (evidence_age)."""

    alpha: float | None = None
    power: float = 0.8
    max_pairs: int | None = None  # None: MAX_REPLICAS_RUNS, or MAX_REPLICAS_PAIRS with controls
    floor: float = DEFAULT_FLOOR
    screen_z: float | None = None  # None: SCREEN_Z_RUNS, or SCREEN_Z_PAIRS with controls
    controls: bool = False
    drift_std: float = DEFAULT_DRIFT_STD  # names.py says why

    # False: the looks' boundary splits alpha over them (Bonferroni), as before the exact one
    exact: bool = True

    def __post_init__(self) -> None:
        # frozen: the defaults are set once, here
        if self.alpha is None:
            object.__setattr__(self, "alpha", ALPHA_PAIRS if self.controls else ALPHA_RUNS)
        if self.max_pairs is None:
            object.__setattr__(self, "max_pairs",
                               MAX_REPLICAS_PAIRS if self.controls else MAX_REPLICAS_RUNS)
        if self.screen_z is None:
            object.__setattr__(self, "screen_z",
                               SCREEN_Z_PAIRS if self.controls else SCREEN_Z_RUNS)

    @property
    def looks(self) -> int:
        """How often one candidate is tested at most: after each pair, or after each of its own
        runs (the first included)."""
        return self.max_pairs + (not self.controls)

    @property
    def futility_z(self) -> float:
        """A candidate stops, discarded, at or below this many standard errors over the floor:
        screen_z for its own runs, 0 for pairs (their first run was the screen)."""
        return 0.0 if self.controls else self.screen_z

    def boundary(self, dof: int | None = None, parent_share: float = 0.0) -> float:
        """What the gain over its standard error must pass at any look, so that a change whose
        true gain is the floor is kept alpha of the time over all its looks, futility included
        (exact_boundary; Bonferroni's alpha / looks a look without `exact`); Student's t when
        the spread was estimated from dof degrees of freedom. parent_share: the parent's part
        of a first look's variance, which every look shares."""
        if not self.exact:
            return t_quantile(1 - self.alpha / self.looks, dof)
        if dof is not None and dof < 1:
            return math.inf
        # the cached grid's neighbours, the higher boundary: never below the exact one
        low = math.floor(min(max(parent_share, 0.0), 1.0) * SHARES) / SHARES
        nearest = DOF_GRID[bisect.bisect_right(DOF_GRID, dof) - 1] if dof is not None else None
        return max(exact_boundary(self.alpha, self.looks, self.futility_z, share, nearest)
                   for share in (low, min(low + 1 / SHARES, 1.0)))


SHARES = 20  # the parent's share on a grid of 0.05, and the degrees of freedom rounded down
# (heavier tails, a higher boundary): a night reuses a few hundred cached boundaries
DOF_GRID = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50, 70, 100, 150, 200, 300,
            500, 1000)


@functools.lru_cache(maxsize=8192)
def exact_boundary(alpha: float, looks: int, futility_z: float, parent_share: float,
                   dof: int | None) -> float:
    """The constant boundary of a sequential test whose looks are correlated, solved so that
    P(keep) = alpha when the true gain is the floor and a look at or below futility_z stops. At
    look k the gain is the parent's value (its share of look 1's variance: parent_share) minus
    the mean of the candidate's first k runs, so looks j < k correlate by sqrt(v_k / v_j),
    v_k = parent_share + (1 - parent_share) / k. Every look divides by the same estimated
    spread, so the statistics are multivariate Student's t with dof degrees of freedom (None:
    normal, a known spread)."""
    # here, not at the top: scipy.stats takes ~0.5 s to import, which every command that reads
    # policy (status, summary, the review views) would pay without ever deciding
    import scipy.stats
    from scipy.optimize import brentq

    share = min(parent_share, 0.99)  # 1 would make the looks one (a singular matrix)
    var = [share + (1 - share) / k for k in range(1, looks + 1)]
    corr = np.array([[math.sqrt(var[max(i, j)] / var[min(i, j)]) for j in range(looks)]
                     for i in range(looks)])
    one = scipy.stats.norm() if dof is None else scipy.stats.t(dof)

    def joint(k: int):  # a frozen multivariate normal or t
        if dof is None:
            return scipy.stats.multivariate_normal(cov=corr[:k, :k])
        return scipy.stats.multivariate_t(shape=corr[:k, :k], df=dof)

    def kept(c: float) -> float:
        # keep at look k: every earlier look in the grey zone (futility_z, c], this one past c
        total = float(one.sf(c))
        if c <= futility_z:  # no grey zone: the first look decides alone
            return total
        for k in range(2, looks + 1):
            upper, lower = [c] * (k - 1) + [np.inf], [futility_z] * (k - 1) + [c]
            dist = joint(k)
            total += dist.cdf(upper, lower_limit=lower, **_seeded(dist.cdf))
        return total

    low, high = float(one.isf(alpha)), float(one.isf(alpha / looks))
    if looks == 1 or kept(low) <= alpha:  # one look, or none in the grey zone: the first alone
        return low
    return float(brentq(lambda c: kept(c) - alpha, low, high, xtol=1e-5))


def _seeded(cdf: Callable) -> dict[str, int]:
    """The same draws every time, the same boundary (Genz's integration is randomised): the seed
    under the name this scipy gives it (`rng`, `random_state`), or none where it takes none
    (scipy 1.15's multivariate normal: the boundary then varies in its sixth digit)."""
    names = inspect.signature(cdf).parameters
    return next(({name: 0} for name in ("rng", "random_state") if name in names), {})


def t_quantile(p: float, dof: int | None) -> float:
    """Student's t quantile (the normal one for dof None): exact for 1 and 2 degrees of freedom,
    the Cornish-Fisher expansion from 3 on (within 2 % of the exact value there)."""
    if dof is None:
        return NORMAL.inv_cdf(p)
    if dof < 1:
        return math.inf
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NORMAL.inv_cdf(p)
    return (z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * dof ** 3))


def t_tail(z: float, dof: int | None) -> float:
    """P(T > z) for Student's t (normal for dof None), the inverse of t_quantile, so that a
    p-value below alpha and a z past the boundary always agree."""
    if dof is None:
        return 1 - NORMAL.cdf(z)
    if dof < 1:
        return 1.0
    if dof == 1:
        return 0.5 - math.atan(z) / math.pi
    if dof == 2:
        return 0.5 - z / (2 * math.sqrt(2 + z * z))
    if z < 0:
        return 1 - t_tail(-z, dof)
    lo, hi = 0.5, 1 - 1e-15  # t_quantile rises with p: bisect for the p whose quantile is z
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_quantile(mid, dof) < z else (lo, mid)
    return 1 - lo


def pair_std(within_std: float) -> float:
    """The std of one paired gain: two independent runs on workers whose offsets are known."""
    return math.sqrt(2) * within_std


def min_detectable_gain(within_std: float | None, rule: Rule, dof: int | None = None,
                        parent_se: float = 0.0) -> float | None:
    """The smallest true gain kept with the rule's power, using all its looks: pairs, or runs
    against a parent whose value has the standard error parent_se."""
    if within_std is None:
        return None
    share = 0.0
    if rule.controls:
        se = pair_std(within_std) / math.sqrt(rule.max_pairs)
    else:
        se = math.sqrt(within_std ** 2 / rule.looks + parent_se ** 2)
        share = parent_se ** 2 / (parent_se ** 2 + within_std ** 2) if parent_se else 0.0
    return rule.floor + (rule.boundary(dof, share) + NORMAL.inv_cdf(rule.power)) * se


def pair_gain(control: float, candidate: float, control_offset: float = 0.0,
              candidate_offset: float = 0.0) -> float:
    """The candidate's gain over its parent's control run, each corrected by its worker's offset
    (on the same worker the offsets cancel)."""
    return (control - candidate) - (control_offset - candidate_offset)


@dataclass
class Screened:
    go_on: bool  # worth paired runs
    gain: float | None  # over the parent's value on this worker; None: the parent never ran
    se: float | None


def screen_run(value: float, worker: str, parent: str, model: Fit, rule: Rule) -> Screened:
    """A first run against its parent's value on the same worker (the parent's fitted value plus
    this worker's offset). Clear losers stop here; the grey zone and wins go on to pairs. Before
    any commit ran twice (no spread known) every run that beats its parent goes on."""
    if parent not in model.values:
        return Screened(True, None, None)
    expected = model.values[parent] + model.offsets.get(worker, 0.0)
    gain = expected - value
    if model.within_std is None:
        return Screened(gain > rule.floor, gain, None)
    se = math.sqrt(model.within_std ** 2 + model.ses[parent] ** 2)
    return Screened(gain - rule.floor > rule.screen_z * se, gain, se)


@dataclass
class Verdict:
    """What the pairs so far say: 'keep', 'discard' or 'more' (one more pair), with evidence."""

    action: str
    pairs: int
    mean: float  # mean paired gain
    low: float  # mean - boundary x se: kept only when this clears the floor
    high: float
    p: float  # one-sided p-value against the floor, times alpha over the boundary's nominal
    # tail (the looks, under Bonferroni), at most 1: below alpha exactly when low clears the floor
    unit: str = "pair"  # what `pairs` counts: pairs, or the candidate's runs
    tail: float = 1.0  # this look's own one-sided p-value against the floor (1: se unknown)

    def describe(self) -> str:
        return (f"{signed(self.mean)} over {self.pairs} {self.unit}{'s' * (self.pairs != 1)} "
                f"[{signed(self.low)}, {signed(self.high)}], p {self.p:.3g}")


def sequential(gains: list[float], within_std: float | None, rule: Rule, dof: int | None = None,
               ) -> Verdict:
    """After each pair: keep when the mean paired gain clears the floor by the boundary; discard
    when it is at or below the floor (futility) or the pairs are used up; else one more pair.
    within_std: the noise model's, estimated from dof degrees of freedom (None: known). Without
    it (no commit ran twice yet) the pairs' own spread is used, so a single pair never keeps."""
    n = len(gains)
    mean = statistics.fmean(gains)
    if within_std is not None:
        se = pair_std(within_std) / math.sqrt(n)
    else:
        se = statistics.stdev(gains) / math.sqrt(n) if n >= 2 else math.inf
        dof = n - 1
    return _verdict(mean, se, dof, rule, n, "pair")


def judge_runs(model: Fit, candidate: str, parent: str, rule: Rule) -> Verdict:
    """After each run of a candidate, its first included: its gain over its parent from the
    fitted values (each run corrected by its worker's offset, the parent's own uncertainty
    included). Keep when the gain clears the floor by the boundary; discard when it is within
    screen_z standard errors of the floor (futility; before any spread is known, when it does not
    beat its parent at all) or the runs are used up; else one more run. The first run counts:
    the boundary holds over every look, so a candidate picked for its lucky first run is kept
    at most alpha of the time when it is a no-op (exact_boundary, from the part of the gain's
    variance all its looks share: the parent's value, the offsets' errors, the drift, all but
    its own runs' noise)."""
    n = sum(r.commit == candidate for r in model.runs)
    gain, se = model.gain(candidate, parent) if parent in model.values else (rule.floor, math.inf)
    share = 0.0
    if math.isfinite(se):
        drift = rule.drift_std ** 2 * evidence_age(model, candidate, parent)
        se = math.sqrt(se ** 2 + drift)
        shared = max(se ** 2 - model.within_std ** 2 / n, 0.0)
        share = shared / (shared + model.within_std ** 2) if shared else 0.0
    return _verdict(gain, se, model.dof, rule, n, "run", share)


def evidence_age(model: Fit, candidate: str, parent: str) -> float:
    """How many runs of one worker the parent's runs are older than the candidate's newest, on
    average: the tag's runs in between (model.runs is in the order they ended), shared by the
    workers. A random walk's variance over that age bounds the drift between the two values."""
    order = range(len(model.runs))
    newest = max(i for i in order if model.runs[i].commit == candidate)
    mean = statistics.fmean(i for i in order if model.runs[i].commit == parent)
    return max(newest - mean, 0.0) / max(len(model.offsets), 1)


def _verdict(gain: float, se: float, dof: int | None, rule: Rule, looks: int, unit: str,
             parent_share: float = 0.0) -> Verdict:
    """The test at one look: keep past the boundary, discard at or below rule.futility_z
    standard errors over the floor or at the last look, else one more. A gain whose standard
    error is not known yet (inf) is never kept, and stops only when it does not clear the floor.
    p: the one-sided p-value times alpha over the boundary's nominal tail (the looks, under
    Bonferroni), so that it is below alpha exactly when the gain passes the boundary."""
    excess = gain - rule.floor
    if math.isfinite(se):
        z = excess / se if se > 0 else (math.inf if excess > 0 else -math.inf)
        futile = z <= rule.futility_z
    else:
        z, futile = 0.0, excess <= 0
    boundary = rule.boundary(dof, parent_share)
    tail = t_tail(z, dof) if math.isfinite(z) else float(z < 0)  # this look's own p-value
    if not math.isfinite(z):
        p = tail
    elif math.isfinite(boundary):  # alpha over the boundary's tail: the looks, for Bonferroni
        p = min(1.0, rule.alpha / t_tail(boundary, dof) * tail)
    else:
        p = 1.0
    half = boundary * se if se > 0 else 0.0
    if z > boundary:
        action = "keep"
    elif futile or looks >= rule.looks:
        action = "discard"
    else:
        action = "more"
    return Verdict(action, looks, gain, gain - half, gain + half, p, unit,
                   tail if math.isfinite(se) else 1.0)  # 1: nothing known yet


@dataclass
class Noise:
    """What the noise model says now, for state.json, `status` and `summary`."""

    threshold: float  # the smallest gain kept with 80 % power (the floor while std is unknown)
    floor: float
    values: list[float]  # every baseline-wave val_bpb
    std: float | None  # within one worker: the noise model's residual std
    spread: float | None
    rule: str  # how decisions are made, in words
    offsets: dict[str, float] = field(default_factory=dict)  # worker -> its fixed offset
    dof: int = 0  # degrees of freedom behind std
    alpha: float = 0.05
    max_pairs: int = MAX_REPLICAS_RUNS


def measure(model: Fit, values: list[float], rule: Rule, parent: str | None = None) -> Noise:
    """The noise record of a fitted model (values: the baseline wave's runs; parent: the
    commit new candidates are judged against, whose own uncertainty bounds the smallest gain)."""
    parent_se = model.ses.get(parent, 0.0) if parent else 0.0
    smallest = min_detectable_gain(model.within_std, rule, model.dof,
                                   parent_se if math.isfinite(parent_se) else 0.0)
    spread = max(values) - min(values) if values else None
    replicas = f"<= {rule.max_pairs} pairs" if rule.controls else \
        f"<= {rule.looks} runs of the candidate against its parent's fitted value"
    if model.within_std is None:
        # one wave run on each worker fits the offsets exactly: nothing is left for the spread
        words = ("no spread yet (every run so far is the only one of its commit, or its "
                 "worker's offset): a candidate's replicas measure it first")
    else:
        drift = f", drift {rule.drift_std:g} a run allowed for" if not rule.controls else ""
        words = (f"sequential test, false keeps <= {rule.alpha:g}, power {rule.power:g} at the "
                 f"min detectable gain, {replicas}, floor {rule.floor:g}{drift}")
    return Noise(smallest if smallest is not None else rule.floor, rule.floor, values,
                 model.within_std, spread, words, model.offsets, model.dof,
                 rule.alpha, rule.max_pairs)


@dataclass
class Context:
    """What a decision needs besides the job and its outcome."""

    tag: str
    now: str
    best: str  # the current best commit
    model: Fit  # the noise model, fitted to the tag's measured runs so far
    rule: Rule
    candidate: Candidate | None  # for CONTROL/CONFIRM: the candidate they serve
    max_fix_attempts: int
    # runs hold a loss (lower is better); this turns one back into the metric's own value, so the
    # reasons a row gives read in the metric's units and direction (the identity for val_bpb)
    shown: Callable[[float], float] = float
    workers: int = 1  # how many workers run jobs: with 2+ a pair is a crossover


def decide(job: Job, out: Outcome, ctx: Context) -> Decision:
    """What a finished run means, as a Decision the coordinator carries out."""
    if job.kind in (Kind.BASELINE, Kind.NOISE):
        return _baseline(job, out, ctx)
    if job.kind == Kind.CONTROL:
        return _control(job, out, ctx)
    if job.kind == Kind.CONFIRM:
        return _confirm(job, out, ctx)
    return _agent_code(job, out, ctx)


def _row(job: Job, out: Outcome, ctx: Context, status: str, reason: str = ""):
    return row_for(job, out, status, reason, ctx.tag, ctx.now)


def _baseline(job: Job, out: Outcome, ctx: Context) -> Decision:
    if out.metrics is None:
        decision = Decision([_row(job, out, ctx, "crash")])
        if job.kind == Kind.BASELINE:
            decision.stop = (f"the baseline crashed ({out.reason}): {out.error or 'no error line'}"
                             f" (see {job.run_dir}/run.log); fix that, then run the same command")
        return decision
    status = "keep" if job.kind == Kind.BASELINE else "discard"
    return Decision([_row(job, out, ctx, status, "" if status == "keep" else "noise")])


def _control(job: Job, out: Outcome, ctx: Context) -> Decision:
    cand = ctx.candidate
    reason = f"control for #{job.subject}"
    if cand.failed:  # the candidate's half of a crossover crashed first: the pair is lost
        return _unjudged(job, out, ctx, cand)
    if out.metrics is None:
        held = replace(cand, failed=f"its control run #{job.n} crashed ({out.reason})")
        if cand.pending is None:
            return Decision([_row(job, out, ctx, "crash")], hold=held)
        return _unjudged(job, out, ctx, held)
    value = out.metrics["val_bpb"]
    if cand.pending is not None:  # the candidate's half came first: this control completes it
        gain = _paired(ctx, cand, value, job.worker, cand.pending, cand.pending_worker)
        return _judge(job, out, ctx, replace(cand, pending=None, pending_worker=None),
                      [*cand.gains, gain])
    held = replace(cand, control=value, control_worker=job.worker)
    return Decision([_row(job, out, ctx, "discard", reason)], hold=held)


def _paired(ctx: Context, cand: Candidate, control: float, control_worker: int | None,
            value: float, worker: int | None) -> float:
    """A pair's gain, each half corrected by its worker's fitted offset: on one worker they
    cancel; across a crossover's two they are what the workers add (None: the candidate's own
    worker, as before pairs could cross)."""
    offsets = ctx.model.offsets

    def offset(w: int | None) -> float:
        return offsets.get(str(cand.worker if w is None else w), 0.0)

    return pair_gain(control, value, offset(control_worker), offset(worker))


def _with_evidence(row: Row, verdict: Verdict, status: str, reason: str) -> Row:
    return replace(row, status=status, reason=reason, pairs=verdict.pairs, gain=verdict.mean,
                   gain_low=verdict.low, gain_high=verdict.high, p_value=verdict.p)


def _confirm(job: Job, out: Outcome, ctx: Context) -> Decision:
    cand = ctx.candidate
    # a crossover's control may still be running: this half waits for it
    waiting = ctx.rule.controls and cand.control is None and not cand.failed
    why = cand.failed or f"its confirmation run #{job.n} crashed ({out.reason})"
    if out.metrics is None and waiting:
        return Decision([_row(job, out, ctx, "crash")], tried={job.n: job.commit},
                        hold=replace(cand, failed=why))
    if out.metrics is None or cand.failed:
        return _unjudged(job, out, ctx, replace(cand, failed=why))
    if not ctx.rule.controls:
        return _replica(job, out, ctx, cand)
    value = out.metrics["val_bpb"]
    if waiting:
        why = f"pair {len(cand.gains) + 1} of #{cand.n}: its control is still running"
        return Decision([_row(job, out, ctx, "discard", why)], tried={job.n: job.commit},
                        hold=replace(cand, pending=value, pending_worker=job.worker))
    gains = [*cand.gains, _paired(ctx, cand, cand.control, cand.control_worker, value,
                                  job.worker)]
    return _judge(job, out, ctx, cand, gains)


def _replica(job: Job, out: Outcome, ctx: Context, cand: Candidate) -> Decision:
    """One more run of a candidate against its parent's fitted value: keep, discard, or again.
    Its first run's row waits in the candidate, so the model gets it here; the replicas before
    this one are in results.tsv already."""
    model = ctx.model.plus(Run(cand.commit[:7], str(cand.worker), cand.row.val_bpb),
                           Run(job.commit[:7], str(job.worker), out.metrics["val_bpb"]))
    verdict = judge_runs(model, cand.commit[:7], cand.parent[:7], ctx.rule)
    if verdict.action != "more":
        return _settle(job, out, ctx, cand, verdict)
    why = f"run {verdict.pairs} of #{cand.n}: {verdict.describe()}: one more run"
    return Decision([_row(job, out, ctx, "discard", why)], tried={job.n: job.commit}, hold=cand,
                    follow=[confirm_job(cand, job.hypothesis, anywhere=True)],
                    log=[f"#{cand.n} {why}"])


def _unjudged(job: Job, out: Outcome, ctx: Context, cand: Candidate) -> Decision:
    """A pair that cannot be judged (a run of it crashed): the candidate is not confirmed."""
    first = replace(cand.row, status="discard", reason=f"not confirmed: {cand.failed}")
    second = _row(job, out, ctx, "crash" if out.metrics is None else "discard", first.reason)
    return Decision([first, second], tried=_tried(job, cand), settle=cand.n)


def _tried(job: Job, cand: Candidate) -> dict[int, str]:
    """tried/<run> refs of a settled candidate: its own runs (a control ran the parent)."""
    return {cand.row.experiment: cand.commit} | \
        ({job.n: job.commit} if job.kind != Kind.CONTROL else {})


def _judge(job: Job, out: Outcome, ctx: Context, cand: Candidate, gains: list[float],
           ) -> Decision:
    """The sequential test after a pair completed by this run (a confirmation, or the control
    of a port): keep, discard, or one more pair."""
    verdict = sequential(gains, ctx.model.within_std, ctx.rule, ctx.model.dof)
    if verdict.action == "more":
        why = f"pair {verdict.pairs} of #{cand.n}: {verdict.describe()}: one more pair"
        tried = {job.n: job.commit} if job.kind == Kind.CONFIRM else {}
        held = replace(cand, control=None, control_worker=None, gains=gains)
        return Decision([_row(job, out, ctx, "discard", why)], tried=tried, hold=held,
                        follow=_pair(held, job, ctx.workers), log=[f"#{cand.n} {why}"])
    return _settle(job, out, ctx, cand, verdict)


def _settle(job: Job, out: Outcome, ctx: Context, cand: Candidate, verdict: Verdict,
            ) -> Decision:
    """A candidate decided by its last run (a confirmation, or a port's control): kept, ported
    onto a best that moved meanwhile, or discarded, with the evidence on its own row."""
    own = "keep" if job.kind == Kind.CONFIRM else "discard"  # a control ran the parent's code
    ok = verdict.action == "keep"
    against = "its parent's controls" if ctx.rule.controls else "its parent's fitted value"
    why = f"{'confirmed' if ok else 'not confirmed'}: {verdict.describe()} vs {against}"
    first = cand.row
    if ok and cand.parent == ctx.best:
        return Decision([_with_evidence(first, verdict, "keep", why),
                         _row(job, out, ctx, own, why)], keep=cand.commit, settle=cand.n,
                        log=[f"#{cand.n} kept: {why}"])
    if ok:  # it beat its parent, but another worker moved the best meanwhile
        why += f"; the best moved to {ctx.best[:7]}: re-applying it there"
        port = Port(cand.n, cand.worker, cand.commit, cand.parent, first.description,
                    verdict.mean)
    else:
        port = None
    return Decision([_with_evidence(first, verdict, "discard", why),
                     _row(job, out, ctx, "discard", why)], tried=_tried(job, cand),
                    settle=cand.n, port=port)


def _pair(cand: Candidate, job: Job, workers: int, control_only: bool = False) -> list[Job]:
    """The next (control, candidate) pair of a candidate, before anything else (crossover picks
    the workers); the control alone when the candidate's run is already in (a port's own run)."""
    mine, other = crossover(cand, workers)
    control = Job("", Kind.CONTROL, other, cand.parent, cand.parent,
                  f"control for #{cand.n}: its parent again", priority=0, subject=cand.n)
    return [control] if control_only else [control, confirm_job(cand, job.hypothesis, mine)]


def crossover(cand: Candidate, workers: int) -> tuple[int, int]:
    """(the candidate's worker, the control's) for its next pair. One worker runs both, one
    after the other. With several the two are queued at once, each ahead of its worker's new
    ideas: the candidate on its own worker a and the control on the next one b, swapped at
    every other pair, so each worker runs both sides equally and its offset cancels; one wave
    replaces two runs in a row."""
    a = cand.worker % max(workers, 1)  # a resumed loop may have fewer workers
    if workers < 2:
        return a, a
    b = (a + 1) % workers
    return (a, b) if len(cand.gains) % 2 == 0 else (b, a)


def confirm_job(cand: Candidate, hypothesis: str = "", worker: int | None = None,
                anywhere: bool = False) -> Job:
    """The candidate's code run again: the candidate's half of a pair, on `worker` (None: its
    own), or with `anywhere` a replica that whichever worker is free first runs."""
    return Job("", Kind.CONFIRM, cand.worker if worker is None else worker, cand.commit,
               cand.parent, f"confirm #{cand.n}: {cand.row.description}", agent=cand.row.agent,
               priority=0, subject=cand.n, hypothesis=hypothesis, any_worker=anywhere)


def _agent_code(job: Job, out: Outcome, ctx: Context) -> Decision:
    tried = {job.n: job.commit}
    if out.metrics is None:
        decision = Decision([_row(job, out, ctx, "crash")], tried=tried)
        attempt = job.fix_attempt + 1 if job.kind == Kind.FIX else 1
        if out.reason in FIXABLE_REASONS and attempt <= ctx.max_fix_attempts:
            decision.tasks.append(Task(Kind.FIX, job.worker, job.n, job.commit, job.parent,
                                       job.description, out.log_tail, attempt=attempt))
        elif job.kind == Kind.FIX and out.reason in FIXABLE_REASONS:
            decision.log.append(f"giving up on fixing after {job.fix_attempt} attempts")
        return decision
    value = out.metrics["val_bpb"]
    if not ctx.rule.controls:
        return _first_run(job, out, ctx)
    seen = screen_run(value, str(job.worker), job.parent[:7], ctx.model, ctx.rule)
    if seen.gain is None:
        vs = f"parent {job.parent[:7]} not measured yet"
    else:
        vs = _vs_parent(job, value, seen.gain, seen.se, ctx.shown)
    # a port was not picked for looking good (its change won against another parent): its own
    # run is the candidate's half of the first pair, unless it clearly lost
    as_pair = job.kind == Kind.PORT and job.parent == ctx.best and seen.gain is not None and \
        seen.gain > ctx.rule.floor
    if not (seen.go_on or as_pair):
        return Decision([_row(job, out, ctx, "discard", vs)], tried=tried)
    if job.parent != ctx.best and seen.gain is not None:
        why = f"{vs}: beat its parent, but the best moved to {ctx.best[:7]}: re-applying it there"
        port = Port(job.n, job.worker, job.commit, job.parent, job.description, seen.gain)
        return Decision([_row(job, out, ctx, "discard", why)], tried=tried, port=port)
    candidate = Candidate(job.n, job.worker, job.commit, job.parent,
                          _row(job, out, ctx, "discard", vs),
                          pending=value if as_pair else None)
    return Decision([], hold=candidate, follow=_pair(candidate, job, ctx.workers, as_pair),
                    log=[f"#{job.n} {vs}: confirming with pairs of its parent and itself"])


def _first_run(job: Job, out: Outcome, ctx: Context) -> Decision:
    """A change's first run is the first look of its test (judge_runs): a clear loser stops, a
    clear win is kept at once, the grey zone gets one more run of itself. A change that did not
    lose to a parent the best has left since is re-applied onto the best instead."""
    tried, value = {job.n: job.commit}, out.metrics["val_bpb"]
    model = ctx.model.plus(Run(job.commit[:7], str(job.worker), value))
    verdict = judge_runs(model, job.commit[:7], job.parent[:7], ctx.rule)
    vs = _versus(job, value, model, ctx.shown)
    if verdict.action == "discard":
        return Decision([_row(job, out, ctx, "discard", vs)], tried=tried)
    if job.parent != ctx.best:
        why = f"{vs}: beat its parent, but the best moved to {ctx.best[:7]}: re-applying it there"
        port = Port(job.n, job.worker, job.commit, job.parent, job.description, verdict.mean)
        return Decision([_row(job, out, ctx, "discard", why)], tried=tried, port=port)
    row = _row(job, out, ctx, "discard", vs)
    if verdict.action == "keep":
        why = f"on its first run: {verdict.describe()} vs its parent's fitted value"
        return Decision([_with_evidence(row, verdict, "keep", why)], keep=job.commit,
                        log=[f"#{job.n} kept: {why}"])
    candidate = Candidate(job.n, job.worker, job.commit, job.parent, row)
    return Decision([], hold=candidate,
                    follow=[confirm_job(candidate, job.hypothesis, anywhere=True)],
                    log=[f"#{job.n} {vs}: running it again"])


def _versus(job: Job, value: float, model: Fit, shown: Callable[[float], float]) -> str:
    """A first run against its parent on its worker (see _vs_parent)."""
    parent = job.parent[:7]
    if parent not in model.values:
        return f"parent {parent} not measured yet"
    gain, se = model.gain(job.commit[:7], parent)
    return _vs_parent(job, value, gain, se if math.isfinite(se) else None, shown)


def _vs_parent(job: Job, value: float, gain: float, se: float | None,
               shown: Callable[[float], float]) -> str:
    """`+0.0005 vs parent abc1234 on worker 0 (1.000000 +- 0.000300)`: the run's difference from
    its parent's expected value on that worker, that expected value and the gain's standard
    error, in the metric's own units (a higher-is-better metric reads the right way up)."""
    expected = shown(value + gain)
    spread = f" +- {se:.6f}" if se is not None else ""
    return (f"{signed(shown(value) - expected)} vs parent {job.parent[:7]} on worker "
            f"{job.worker} ({expected:.6f}{spread})")

"""Decision rules on simulated nights: how much of the real gain each keep rule captures, how often
it keeps what does not help, and what its replicas cost, with 1, 2 and 8 workers.

    uv run scripts/simulate-night.py                         # 200 nights a setting, the table
    uv run scripts/simulate-night.py --nights 20 --json      # fewer nights, JSON
    uv run scripts/simulate-night.py --within-std 0.0003 --workers 1 --noop-fraction 0
    uv run scripts/simulate-night.py --rules sequential --fdr addis --fdr-level 0.2  # online FDR

A night is a fixed number of GPU-hours (--gpu-hours, runs of --run-minutes each): one worker
runs them one after another, N workers share them. Every proposal is made on the best of its
start and has a true effect drawn from a real night (--results, karpathy's mar8 results.tsv: each
experiment's val_bpb against the best of its time, the running minimum of the kept rows before
it); a fraction of the proposals (--noop-fraction) are exact no-ops. A run measures

    val_bpb = the commit's true value + its worker's offset + the worker's drift + noise

where the offsets are drawn once a night (--offset-std), the drift is a random walk per worker
(--drift-std per run), and the noise is the within-GPU std (--within-std) plus, with more than one
worker, the contention the busy workers cause each other (--contention-std). A win on a parent
that another worker has since replaced is re-applied (ported) onto the new best and judged again,
as the loop does. A decision's further runs go to whichever worker frees up first, ahead of its
new idea, preferring one that has not run that commit for it (--schedule other: a pair becomes a
crossover), or stay on the worker that proposed it (own).

The rules call the real functions of autoresearch/policy.py, so the simulator judges the code
that ships, not a copy of it: the sequential rule (the loop's default) and the paired rule (the
loop's --controls) from this checkout, today's rule (before issue 25) from the policy.py of
--today-rev, read with git.
"""

from __future__ import annotations

import argparse
import csv
import functools
import heapq
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType

import numpy as np
from scipy.special import zeta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch import policy  # noqa: E402
from autoresearch.ledger.wave import wave_size  # noqa: E402

# Calibration: measured numbers, each with its source. The flags take these as defaults.
FIXTURE = ROOT / "tests" / "data" / "results_mar8.tsv"  # karpathy's mar8 night, in this repo
SHARED = Path("shared") / "data" / "ecosystem" / "results_mar8.tsv"  # beside the checkout
WITHIN_STD = 0.0003  # one H100, 300 s runs (issue 25's first model; the device's std 0.00026)
OFFSET_STD = 0.0046  # 2 x H200 differed by 0.0039-0.0069 (BENCHMARKS.md): E|a-b| = 1.13 x std;
# two H100s on the same code and data by 0.0045
CONTENTION_STD = 0.0002  # not measured yet: a guess below the within-GPU std
# per run, a random walk (0.0002 over 120 runs): a guess; measured on one H100 but not resolved
# (slope +0.00006 +- 0.00012 a run over 5 runs, BENCHMARKS.md)
DRIFT_STD = 0.00002
GPU_HOURS = 10.0  # karpathy's night: 120 runs of 5 minutes on one H100
RUN_MINUTES = 5.0
RUN_JITTER = 0.05  # runs differ a little in length, so workers drift out of step
NOOP_FRACTION = 0.1
NIGHTS = 200
WORKERS = (1, 2, 8)
POWER = 0.8  # the smallest gain kept with this probability is reported
NOISE_RUNS = 2  # the loop's default --noise-runs
TODAY_REV = "f95e2e83d2e3f29bfb9dc44cffd41f062d10cd27"  # main before issue 25: today's keep rule
TWO_GPU_THRESHOLD = 0.0054  # the threshold the loop measured on 2 x H200 (BENCHMARKS.md)
SCREEN_THRESHOLD = 0.0006  # 2 x the within-GPU std: a screen near the noise
PAIRS_MAX = 2  # the paired rule's best setting (its sweep, BENCHMARKS.md; its screen: policy's)


# ---- the real night the true effects come from

@dataclass
class Source:
    """True effects (gains, > 0 is better) of every experiment of a real night, and the night's
    own total kept gain."""

    gains: list[float]
    file_gain: float


def read_source(path: Path) -> Source:
    """Every finished experiment's gain over the best of its time (the running minimum of the kept
    rows before it), and the gain of the night's kept rows in total."""
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["status"] != "crash"]
    if not rows:
        raise SystemExit(f"{path}: no finished rows; give a results.tsv with --results")
    start = best = float(rows[0]["val_bpb"])
    gains = []
    for row in rows[1:]:
        value = float(row["val_bpb"])
        gains.append(best - value)
        if row["status"] == "keep":
            best = min(best, value)
    return Source(gains, start - best)


def default_results() -> Path:
    """The fixture if this checkout has it, else the shared copy beside the checkout (or beside
    the folder of worktrees); the fixture's path when neither exists, for the error to name."""
    places = [FIXTURE, ROOT.parent / SHARED, ROOT.parent.parent / SHARED]
    return next((p for p in places if p.exists()), FIXTURE)


# ---- one night

@dataclass
class Noise:
    within_std: float
    offset_std: float
    contention_std: float
    drift_std: float


@dataclass
class Commit:
    parent: int | None
    true: float  # true val_bpb, relative to the baseline's
    effect: float  # its true gain over its parent
    noop: bool = False
    runs: list[tuple[int, float]] = field(default_factory=list)  # (worker, val_bpb)
    ended: list[int] = field(default_factory=list)  # each run's place in the night's order


CANDIDATE, CONTROL = "candidate", "control"


@dataclass
class Verdict:
    keep: bool


# A judge yields the runs it wants next, started together (CANDIDATE or CONTROL each), and gets
# back (worker, val_bpb) for each of them in that order once all have ended.
Judge = Generator[tuple[str, ...], list[tuple[int, float]], Verdict]


class Night:
    """The state one night's rules see: commits and their runs, the best, the noise."""

    def __init__(self, workers: int, noise: Noise, rng: np.random.Generator):
        self.workers, self.noise, self.rng = workers, noise, rng
        self.offsets = rng.normal(0.0, noise.offset_std, workers)
        # Proposals draw from a stream of their own: the k-th proposal of a seeded night is the
        # same under every rule, so the rules are compared on the same ideas.
        self.ideas = np.random.default_rng(rng.integers(2**63))
        self.drift = np.zeros(workers)
        self.commits = [Commit(None, 0.0, 0.0)]
        self.best = 0
        self.wave: list[tuple[int, float]] = []
        self.ended = 0  # runs ended so far

    def measure(self, commit: int, worker: int) -> float:
        """One run of the commit on the worker: its value as train.py would report it."""
        n = self.noise
        self.drift[worker] += self.rng.normal(0.0, n.drift_std)
        noise = self.rng.normal(0.0, n.within_std)
        if self.workers > 1:
            noise += self.rng.normal(0.0, n.contention_std)
        value = self.commits[commit].true + self.offsets[worker] + self.drift[worker] + noise
        self.commits[commit].runs.append((worker, value))
        self.commits[commit].ended.append(self.ended)
        self.ended += 1
        return float(value)

    def values(self, commit: int) -> list[float]:
        return [v for _, v in self.commits[commit].runs]


class Rule:
    """A keep rule: how many baseline runs the first wave takes, and how a candidate is judged.
    judge() yields the runs it wants and gets their (worker, value)s back; the first yield is the
    candidate's own first run alone."""

    name = ""
    # the first wave of the rules that fit worker offsets, as the loop's: whole rounds (a run on
    # every worker each), at least first_wave of them and at least 1 + noise_runs runs
    first_wave = 1
    noise_runs = NOISE_RUNS
    # its replicas may run on another worker (--schedule): only a rule that corrects each run by
    # its worker's fitted offset; the others compare runs of one worker, as the loop ran them
    moves = False

    def wave_runs(self, workers: int) -> int:
        return 1

    def setup(self, night: Night) -> None:
        """Measure what the rule needs from the first wave (night.wave)."""

    def judge(self, night: Night, commit: int) -> Judge:
        raise NotImplementedError

    def settled(self, commit: int, kept: bool) -> None:
        """The decision on a commit ended: kept, or not (discarded, or ported onto a new best)."""


class OneRun(Rule):
    """karpathy's rule: one run, kept if it beats the best's value."""

    name = "karpathy one run"

    def judge(self, night: Night, commit: int) -> Judge:
        [(_, value)] = yield (CANDIDATE,)
        parent = statistics.fmean(night.values(night.commits[commit].parent))
        return Verdict(value < parent)


def policy_at(rev: str) -> ModuleType:
    """autoresearch/policy.py as committed at `rev`, loaded beside today's as a module of its own;
    exits with one line when this checkout's history lacks it."""
    name = f"policy_{rev[:7]}"
    if name in sys.modules:
        return sys.modules[name]
    show = subprocess.run(["git", "show", f"{rev}:autoresearch/policy.py"], cwd=ROOT,
                          capture_output=True, text=True)
    if show.returncode:
        raise SystemExit(f"today's rule is autoresearch/policy.py at {rev[:7]}, not in this "
                         f"checkout's history: give another commit with --today-rev")
    module = sys.modules[name] = ModuleType(name)  # registered first: its dataclasses look it up
    exec(compile(show.stdout, f"{rev[:7]}:autoresearch/policy.py", "exec"), module.__dict__)
    return module


class Today(Rule):
    """autoresearch/policy.py before issue 25 (--today-rev): threshold = max(floor, 2 x pooled std
    of the first wave), a screen against the parent's mean, then one paired confirmation on the
    same worker. Its own functions, read from git, so the simulator judges what the loop ran."""

    def __init__(self, code: ModuleType, floor: float | None = None, fixed: float | None = None):
        self.code, self.fixed = code, fixed
        self.floor = self.threshold = code.DEFAULT_FLOOR if floor is None else floor
        self.name = (f"screen {fixed:g} + 1 pair" if fixed is not None else
                     f"today (floor {self.floor:g})" if floor is None else
                     f"today at {floor:g}")

    def wave_runs(self, workers: int) -> int:
        return max(workers, 1 + NOISE_RUNS)  # as Coordinator.plan_wave

    def setup(self, night: Night) -> None:
        noise = self.code.measure({"H100": [v for _, v in night.wave]}, self.floor, NOISE_RUNS)
        self.threshold = self.fixed if self.fixed is not None else noise.threshold

    def judge(self, night: Night, commit: int) -> Judge:
        [(_, first)] = yield (CANDIDATE,)
        parent = statistics.fmean(night.values(night.commits[commit].parent))
        if not self.code.screen(first, parent, self.threshold):
            return Verdict(False)
        [(_, control)] = yield (CONTROL,)
        [(_, second)] = yield (CANDIDATE,)
        return Verdict(self.code.paired([first, second], control, self.threshold)[0])


class Pairs(Rule):
    """The paired rule (policy.Rule with controls: fit, screen_run, pair_gain, sequential): a first
    run screened against its parent's fitted value on its worker, then (control, candidate)
    pairs, started together, until the sequential test keeps or discards, at most
    rule.max_pairs. On one worker a pair's offsets cancel; on two (a crossover) each run is
    corrected by its worker's fitted offset."""

    moves = True

    def __init__(self, rule: policy.Rule):
        self.rule = rule
        self.name = (f"pairs a={rule.alpha:g} pairs<={rule.max_pairs} "
                     f"z={rule.screen_z:g}{_bonferroni(rule)}")

    def wave_runs(self, workers: int) -> int:
        return wave_size(workers, self.noise_runs, self.first_wave)  # the loop's

    def judge(self, night: Night, commit: int) -> Judge:
        parent = night.commits[commit].parent
        [(worker, first)] = yield (CANDIDATE,)
        model = _fit(night, parent)
        if not policy.screen_run(first, str(worker), str(parent), model, self.rule).go_on:
            return Verdict(False)
        gains = []
        while True:
            [(a, control), (b, again)] = yield (CONTROL, CANDIDATE)
            model = _fit(night, parent, commit)  # refit with the pair, as the loop does
            offsets = [model.offsets.get(str(w), 0.0) for w in (a, b)]
            gains.append(policy.pair_gain(control, again, *offsets))
            verdict = policy.sequential(gains, model.within_std, self.rule, model.dof)
            if verdict.action != "more":
                return Verdict(verdict.action == "keep")


# ---- online FDR control of each candidate's alpha (--fdr; tried and not kept: BENCHMARKS.md)

ALPHA_GRID_STEP = 1.25  # alpha is quantized down onto powers of this (the boundary cache)
ALPHA_GRID_MIN = 1e-5  # the grid's lowest: a smaller alpha is tested at this one


def quantize_alpha(alpha: float) -> float:
    """alpha rounded down onto the grid ALPHA_GRID_MIN x ALPHA_GRID_STEP^k, so a night meets
    few distinct alphas and the boundaries stay cached; never below the grid's lowest."""
    if alpha <= ALPHA_GRID_MIN:
        return ALPHA_GRID_MIN
    k = math.floor(math.log(alpha / ALPHA_GRID_MIN) / math.log(ALPHA_GRID_STEP) + 1e-9)
    return ALPHA_GRID_MIN * ALPHA_GRID_STEP ** k


@dataclass
class FdrTest:
    """One test of an online FDR procedure: what it found (while it runs: selected, nothing
    found, the conservative reading of asynchronous testing)."""

    kept: bool = False  # a discovery
    candidate: bool = False  # its p-value <= lam
    selected: bool = True  # its p-value <= tau


@dataclass
class OnlineFdr:
    """Online false-discovery-rate control of each test's alpha: ADDIS (Tian & Ramdas 2019,
    "ADDIS: an adaptive discarding algorithm for online FDR control with conservative nulls"),
    which is SAFFRON (Ramdas et al. 2018) at tau = 1 and LORD++ (Javanmard & Montanari 2018;
    Ramdas et al. 2017) at tau = 1, lam = 0. Test t gets

        alpha_t = min(lam, (tau - lam) * (w0 g(1 + S - C_0) + (level - w0) g(1 + S - k*_1 - C_1)
                                          + level * sum_{j >= 2} g(1 + S - k*_j - C_j)))

    S: earlier tests selected (p <= tau); k*_j: those selected up to the j-th discovery; C_j:
    candidates (p <= lam) after the j-th discovery (C_0: all); g: a decreasing sequence summing
    to 1 (g_j proportional to j^-decay). LORD++ (lam 0) has no cap. Asynchronous (Zrnic et al.
    2021): alpha_t is fixed when test t starts, from the tests finished then; a test still open
    counts as selected, not a candidate and no discovery."""

    level: float = 0.05
    w0: float | None = None  # initial wealth (None: level / 2)
    lam: float = 0.0
    tau: float = 1.0
    decay: float = 1.6
    tests: list[FdrTest] = field(default_factory=list)

    def gamma(self, j: int) -> float:
        """g_j, j >= 1: j^-decay over zeta(decay), so that they sum to 1."""
        return j ** -self.decay / _zeta(self.decay) if j >= 1 else 0.0

    def alpha_for_next(self) -> tuple[int, float]:
        """The next test's number and its alpha, from the tests known now; the test is open."""
        w0 = self.level / 2 if self.w0 is None else self.w0
        selected = candidates = 0
        found: list[tuple[int, int]] = []  # per discovery: (selected up to it, candidates after)
        for test in self.tests:
            selected += test.selected
            if test.candidate:
                candidates += 1
                found = [(k, c + 1) for k, c in found]
            if test.kept:
                found.append((selected, 0))
        wealth = w0 * self.gamma(1 + selected - candidates)
        for j, (k, c) in enumerate(found):
            wealth += (self.level - w0 if j == 0 else self.level) * self.gamma(1 + selected - k - c)
        alpha = (self.tau - self.lam) * wealth
        if self.lam > 0:
            alpha = min(alpha, self.lam)
        self.tests.append(FdrTest())
        return len(self.tests) - 1, alpha

    def record(self, test: int, kept: bool, p: float) -> None:
        """What test `test` found: a discovery or not, and its p-value (the first look's)."""
        candidate = self.lam > 0 and (kept or p <= self.lam)  # LORD++ has no candidates
        self.tests[test] = FdrTest(kept, candidate, kept or p <= self.tau)


@functools.cache
def _zeta(s: float) -> float:
    return float(zeta(s))


class Sequential(Pairs):
    """The loop's default rule (policy.judge_runs): after each run of the candidate, the first
    included, its fitted gain over its parent's fitted value is tested; at most rule.looks runs.
    batch: how many of the further runs are asked for at once (1: one look at a time; more: they
    can run side by side on several workers, tested when all are in)."""

    def __init__(self, rule: policy.Rule, batch: int = 1, fdr: OnlineFdr | None = None):
        self.rule, self.batch, self.fdr_setting = rule, batch, fdr
        self.fdr: OnlineFdr | None = None
        self.tests: dict[int, tuple[int, float]] = {}  # commit -> its FDR test, first p-value
        self.name = (f"sequential a={rule.alpha:g} runs<={rule.looks} "
                     f"z={rule.screen_z:g}{_bonferroni(rule)}")
        if fdr is not None:
            kind = "LORD++" if fdr.lam == 0 else "SAFFRON" if fdr.tau == 1 else "ADDIS"
            self.name = (f"{kind} fdr={fdr.level:g} w0={fdr.w0} lam={fdr.lam:g} tau={fdr.tau:g} "
                         f"decay={fdr.decay:g} runs<={rule.looks} z={rule.screen_z:g}")

    def setup(self, night: Night) -> None:
        if self.fdr_setting is not None:  # a night's procedure starts afresh
            self.fdr, self.tests = replace(self.fdr_setting, tests=[]), {}

    def settled(self, commit: int, kept: bool) -> None:
        if commit in self.tests:
            test, first = self.tests.pop(commit)
            self.fdr.record(test, kept, first)

    def judge(self, night: Night, commit: int) -> Judge:
        parent = night.commits[commit].parent
        rule, test = self.rule, None
        if self.fdr is not None:
            test, alpha = self.fdr.alpha_for_next()
            rule = replace(rule, alpha=quantize_alpha(alpha))
        yield (CANDIDATE,)
        while True:
            model = _fit(night, parent, commit)
            verdict = policy.judge_runs(model, str(commit), str(parent), rule)
            if test is not None and commit not in self.tests:  # its first look's p-value
                self.tests[commit] = (test, verdict.tail)
            if verdict.action != "more":
                return Verdict(verdict.action == "keep")
            left = self.rule.looks - len(night.commits[commit].runs)
            yield (CANDIDATE,) * min(self.batch, left)


def _bonferroni(rule: policy.Rule) -> str:
    """The name's mark of a rule that splits alpha over its looks."""
    return "" if rule.exact else " Bonferroni"


def _fit(night: Night, parent: int, candidate: int | None = None) -> policy.Fit:
    """policy.fit over the night's runs in the order they ended, as results.tsv has them. A commit
    run once fits itself exactly and changes no other estimate, so only the parent, the candidate
    and the commits run more than once go in (the same fit, faster)."""
    runs = sorted((t, policy.Run(str(i), str(w), v)) for i, c in enumerate(night.commits)
                  if i in (parent, candidate) or len(c.runs) > 1
                  for (w, v), t in zip(c.runs, c.ended, strict=True))
    return policy.fit([run for _, run in runs])


# ---- playing a night

@dataclass
class Tally:
    """One night's outcome under one rule."""

    gain: float = 0.0  # true gain of the kept changes
    keeps: int = 0
    false_keeps: int = 0  # kept with a true effect <= 0
    proposals: int = 0
    noops: int = 0
    noop_keeps: int = 0
    runs: int = 0
    replicas: int = 0  # first-wave runs, controls and repeated candidate runs
    wave: int = 0  # first-wave runs
    ports: int = 0
    port_runs: int = 0  # runs that judged ports
    cut_off: int = 0  # runs of decisions the end of the night left open
    idle: float = 0.0  # run slots of the budget no run fitted into


SCHEDULES = ("own", "any", "other")


@dataclass
class Want:
    """A run a decision waits for, not started yet."""

    decision: Decision
    commit: int
    kind: str  # CANDIDATE or CONTROL
    slot: int  # its place in the decision's request
    avoid: frozenset[int]  # workers that already ran this commit for this decision


@dataclass
class Decision:
    """One commit being judged: its judge, where its runs go and what came back."""

    commit: int
    judge: Judge
    home: int  # the worker that proposed it
    age: int  # the order of its idea: older decisions' runs go first
    port: bool
    looks: int = 0  # requests answered so far
    spent: int = 0  # runs started for it
    waiting: int = 0  # runs of the current request not ended yet
    got: list[tuple[int, int, float]] = field(default_factory=list)  # slot, worker, value
    ran: dict[str, set[int]] = field(default_factory=dict)  # kind -> workers that ran it


class Schedule:
    """Who runs which replica. own: a decision's runs go to the worker that proposed it, one after
    the other (the loop before issue 25's item 2). any: whichever worker frees up first takes the
    oldest decision's next run ahead of a new idea of its own, so a request of several runs
    (a pair, a batch of looks) runs side by side. other: the same, but a run goes to a worker
    that has not run that commit (or that kind of run) for this decision while there is one, so
    offsets average out and a pair is a crossover."""

    def __init__(self, mode: str, workers: int):
        self.mode, self.workers = mode, workers
        self.queue: list[Want] = []

    def ask(self, d: Decision, kinds: tuple[str, ...], night: Night) -> None:
        """Queue the runs of a decision's request; each avoids the workers that ran its kind."""
        self.put(*(Want(d, d.commit if kind == CANDIDATE else night.commits[d.commit].parent,
                        kind, slot, frozenset(d.ran.get(kind, ())))
                   for slot, kind in enumerate(kinds)))

    def put(self, *wants: Want) -> None:
        """Queue runs: older decisions' first, a request's runs in its order (a stable sort)."""
        self.queue.extend(wants)
        self.queue.sort(key=lambda want: want.decision.age)

    def take(self, worker: int) -> Want | None:
        """The run this worker should start now, if any decision waits for one it may run."""
        for want in self.queue:
            if self.mode == "own" and want.decision.home != worker:
                continue
            if self.mode == "other" and worker in want.avoid and \
                    len(want.avoid) < self.workers:
                continue
            self.queue.remove(want)
            return want
        return None


def play(rule: Rule, source: Source, workers: int, budget: float, noise: Noise,
         noop_fraction: float, jitter: float, rng: np.random.Generator,
         schedule: str = "own") -> Tally:
    """One night: the first wave, then every worker runs what the open decisions ask for (by the
    schedule) or proposes, runs and judges a new idea, until the budget (in runs per worker) is
    spent; returns what was kept."""
    night, tally = Night(workers, noise, rng), Tally()
    # The first wave: the baseline, spread over the workers as the loop does; nobody starts
    # experiments before the threshold exists.
    wave = rule.wave_runs(workers)
    for i in range(wave):
        night.wave.append((i % workers, night.measure(0, i % workers)))
    tally.runs = tally.replicas = tally.wave = wave
    rule.setup(night)
    start = float(math.ceil(wave / workers))
    tally.idle = start * workers - wave
    plan = Schedule(schedule if rule.moves else "own", workers)
    open_: dict[int, Decision] = {}  # id -> the decisions started and not decided
    clock: list[tuple[float, int, int, Want | None]] = [(start, w, w, None)
                                                        for w in range(workers)]
    heapq.heapify(clock)
    seq = workers
    while clock:
        now, _, w, running = heapq.heappop(clock)
        if running is not None:  # measured when the run ends: no decision sees it earlier
            _deliver(rule, night, tally, plan, open_, running, w,
                     night.measure(running.commit, w))
        want = plan.take(w)
        length = 1.0 + rng.uniform(-jitter, jitter)
        if now + length > budget:  # the night ends before this run would
            if want is not None:
                plan.put(want)
            tally.idle += max(budget - now, 0.0)
            continue
        if want is None:
            want = _propose(rule, night, tally, source, noop_fraction, w, open_)
        d = want.decision
        d.spent += 1
        d.ran.setdefault(want.kind, set()).add(w)
        tally.runs += 1
        tally.replicas += d.looks > 0
        tally.port_runs += d.port
        seq += 1
        heapq.heappush(clock, (now + length, seq, w, want))
    tally.cut_off = sum(d.spent for d in open_.values())
    return tally


def _propose(rule: Rule, night: Night, tally: Tally, source: Source, noop_fraction: float,
             worker: int, open_: dict[int, Decision]) -> Want:
    """A new idea on the best, its first run on this worker."""
    noop = night.ideas.random() < noop_fraction
    effect = 0.0 if noop else float(night.ideas.choice(source.gains))
    tally.proposals += 1
    tally.noops += noop
    commit = _child(night, night.best, effect, noop)
    return _open(rule, night, open_, commit, worker, tally.proposals, port=False)


def _open(rule: Rule, night: Night, open_: dict[int, Decision], commit: int, home: int,
          age: int, port: bool) -> Want:
    """A decision on the commit, and the want of its first run (its judge's first request)."""
    d = Decision(commit, rule.judge(night, commit), home, age, port)
    kinds = next(d.judge)
    assert kinds == (CANDIDATE,), "a judge starts with the candidate's own run"
    d.waiting = 1
    open_[id(d)] = d
    return Want(d, commit, CANDIDATE, 0, frozenset())


def _deliver(rule: Rule, night: Night, tally: Tally, plan: Schedule,
             open_: dict[int, Decision], want: Want, worker: int, value: float) -> None:
    """A run of a decision ended: once its whole request is in, the judge looks; it asks for more
    runs, keeps (or ports, when the best moved meanwhile) or discards."""
    d = want.decision
    d.got.append((want.slot, worker, value))
    d.waiting -= 1
    if d.waiting:
        return
    results = [(w, v) for _, w, v in sorted(d.got)]
    d.got, d.looks = [], d.looks + 1
    c = night.commits[d.commit]
    try:
        kinds = d.judge.send(results)
    except StopIteration as stop:
        del open_[id(d)]
        rule.settled(d.commit, stop.value.keep and c.parent == night.best)
        if stop.value.keep:
            _keep(rule, night, tally, plan, open_, d)
        return
    if d.looks == 1 and c.parent != night.best:
        del open_[id(d)]  # passed the screen, but the best moved: re-apply it and judge again
        rule.settled(d.commit, False)
        _port_of(rule, night, tally, plan, open_, d)
        return
    d.waiting = len(kinds)
    plan.ask(d, kinds, night)


def _keep(rule: Rule, night: Night, tally: Tally, plan: Schedule, open_: dict[int, Decision],
          d: Decision) -> None:
    c = night.commits[d.commit]
    if c.parent != night.best:
        _port_of(rule, night, tally, plan, open_, d)
        return
    night.best = d.commit
    tally.keeps += 1
    tally.gain += c.effect
    tally.false_keeps += c.effect <= 0
    tally.noop_keeps += c.noop


def _port_of(rule: Rule, night: Night, tally: Tally, plan: Schedule,
             open_: dict[int, Decision], d: Decision) -> None:
    """The change re-applied onto the best, its first run asked for ahead of new ideas."""
    tally.ports += 1
    c = night.commits[d.commit]
    commit = _child(night, night.best, c.effect, c.noop)
    plan.put(_open(rule, night, open_, commit, d.home, d.age, port=True))


def _child(night: Night, parent: int, effect: float, noop: bool) -> int:
    night.commits.append(Commit(parent, night.commits[parent].true - effect, effect, noop))
    return len(night.commits) - 1


# ---- the smallest gain kept with 80 % power

def min_detectable_gain(rule: Rule, workers: int, noise: Noise, trials: int, seed: int,
                        top: float = 0.05) -> float | None:
    """The smallest true gain the rule keeps with POWER probability, a lone candidate on a freshly
    measured night, on each worker in turn (bisection; the same draws for every gain, so the keep
    rate only grows)."""
    def rate(gain: float) -> float:
        kept = 0
        for t in range(trials):
            rng = np.random.default_rng([seed, t])
            night = Night(workers, noise, rng)
            for i in range(rule.wave_runs(workers)):
                night.wave.append((i % workers, night.measure(0, i % workers)))
            rule.setup(night)
            commit = _child(night, 0, gain, False)
            worker = t % workers  # the candidate runs on any worker, not only the baseline's
            judge = rule.judge(night, commit)
            try:
                kinds = next(judge)
                while True:
                    kinds = judge.send([(worker, night.measure(commit if k == CANDIDATE else 0,
                                                                worker)) for k in kinds])
            except StopIteration as stop:
                kept += stop.value.keep
        return kept / trials

    if rate(top) < POWER:
        return None
    low, high = 0.0, top
    for _ in range(14):
        mid = (low + high) / 2
        low, high = (low, mid) if rate(mid) >= POWER else (mid, high)
    return high


# ---- many nights

@dataclass
class Summary:
    rule: str
    workers: int
    nights: int
    runs: float
    gain: float
    gain_se: float
    gain_pct: float  # of the file's gain
    gain_per_120_pct: float  # gain per run x 120, as % of the file's gain
    keeps: float
    false_keep_pct: float  # of all keeps, pooled over the nights
    noop_keep_pct: float  # of the no-op proposals, pooled
    replica_pct: float  # of all runs
    ports: float
    wave_pct: float  # first-wave runs, of all runs
    port_runs_pct: float  # runs that judged ports, of all runs
    cut_off_pct: float  # of all runs
    idle_pct: float  # run slots no run fitted into, of the budget
    min_gain: float | None


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def summarize(rule: Rule, tallies: list[Tally], workers: int, file_gain: float,
              min_gain: float | None) -> Summary:
    gain, se = mean_se([t.gain for t in tallies])
    runs = statistics.fmean(t.runs for t in tallies)
    keeps = sum(t.keeps for t in tallies)
    noops = sum(t.noops for t in tallies)
    total = sum(t.runs for t in tallies)
    return Summary(
        rule.name, workers, len(tallies), runs, gain, se, 100 * gain / file_gain,
        100 * gain / runs * 120 / file_gain, keeps / len(tallies),
        100 * sum(t.false_keeps for t in tallies) / keeps if keeps else 0.0,
        100 * sum(t.noop_keeps for t in tallies) / noops if noops else 0.0,
        100 * sum(t.replicas for t in tallies) / total, statistics.fmean(t.ports for t in tallies),
        100 * sum(t.wave for t in tallies) / total, 100 * sum(t.port_runs for t in tallies) / total,
        100 * sum(t.cut_off for t in tallies) / total,
        100 * sum(t.idle for t in tallies) / (total + sum(t.idle for t in tallies)), min_gain)


RULES = ("karpathy", "today", "today-2gpu", "screen", "pairs", "sequential")


def make_rule(name: str, args: argparse.Namespace) -> Rule:
    """A fresh rule by its name on the command line."""
    makers: dict[str, Callable[[], Rule]] = {
        "karpathy": OneRun,
        "today": lambda: Today(policy_at(args.today_rev)),
        "today-2gpu": lambda: Today(policy_at(args.today_rev), floor=TWO_GPU_THRESHOLD),
        "screen": lambda: Today(policy_at(args.today_rev), fixed=SCREEN_THRESHOLD),
        "pairs": lambda: Pairs(policy.Rule(
            alpha=args.alpha, max_pairs=PAIRS_MAX, power=POWER,
            controls=True, exact=not args.bonferroni)),
        "sequential": lambda: Sequential(policy.Rule(
            alpha=args.alpha, max_pairs=args.max_pairs, screen_z=args.screen_z, power=POWER,
            drift_std=args.rule_drift, exact=not args.bonferroni), args.replica_batch,
            online_fdr(args)),
    }
    rule = makers[name]()
    rule.first_wave, rule.noise_runs = args.first_wave, args.noise_runs
    return rule


def online_fdr(args: argparse.Namespace) -> OnlineFdr | None:
    """The sequential rule's online FDR procedure from the flags, or None (a fixed alpha)."""
    if args.fdr is None:
        return None
    lam, tau = {"lord": (0.0, 1.0), "saffron": (args.fdr_lambda, 1.0),
                "addis": (args.fdr_lambda, args.fdr_tau)}[args.fdr]
    return OnlineFdr(args.fdr_level, args.fdr_w0, lam, tau, args.fdr_decay)


def simulate(args: argparse.Namespace) -> dict:
    """Every rule at every worker count over args.nights seeded nights."""
    source = read_source(args.results)
    noise = Noise(args.within_std, args.offset_std, args.contention_std, args.drift_std)
    budget_runs = args.gpu_hours * 60 / args.run_minutes
    out = []
    for name in args.rules:
        for workers in args.workers:
            rule = make_rule(name, args)
            per_worker = budget_runs if args.wall_clock else budget_runs / workers
            tallies = [play(rule, source, workers, per_worker, noise,
                            args.noop_fraction, args.jitter,
                            np.random.default_rng([args.seed, workers, night]), args.schedule)
                       for night in range(args.nights)]
            power = (min_detectable_gain(make_rule(name, args), workers, noise, args.power_trials,
                                         args.seed) if args.power_trials else None)
            out.append(summarize(rule, tallies, workers, source.file_gain, power))
    return {"file_gain": source.file_gain, "experiments": len(source.gains),
            "budget_runs": budget_runs, "calibration": vars(args) | {"results": str(args.results)},
            "rows": [asdict(s) for s in out]}


def table(result: dict) -> str:
    head = ("| rule | workers | runs | gain (± se) | % of file | % per 120 runs | keeps | "
            "false keeps % | no-ops kept % | replicas % | ports | cut off % | "
            "min gain, 80 % power |")
    lines = [head, "|---" * 13 + "|"]
    for r in result["rows"]:
        mg = f"{r['min_gain']:.4f}" if r["min_gain"] is not None else "—"
        lines.append(
            f"| {r['rule']} | {r['workers']} | {r['runs']:.0f} | {r['gain']:.4f} ± "
            f"{r['gain_se']:.4f} | {r['gain_pct']:.0f} | {r['gain_per_120_pct']:.0f} | "
            f"{r['keeps']:.1f} | {r['false_keep_pct']:.1f} | {r['noop_keep_pct']:.1f} | "
            f"{r['replica_pct']:.0f} | {r['ports']:.1f} | {r['cut_off_pct']:.0f} | {mg} |")
    lines.append(f"\nfile's gain {result['file_gain']:.4f} over {result['experiments']} "
                 f"experiments; {result['budget_runs']:.0f} runs a night")
    return "\n".join(lines)


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The module's text as written, and every flag's default."""


def positive(text: str) -> int:
    """A count of at least one, for argparse (which names the flag in its one-line error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a count of at least 1")
    return value


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    p.add_argument("--results", type=Path, default=default_results(),
                   help="results.tsv whose deltas are the true effects")
    p.add_argument("--nights", type=int, default=NIGHTS, help="seeded nights per setting")
    p.add_argument("--seed", type=int, default=0, help="the same seed, the same numbers")
    p.add_argument("--workers", type=int, nargs="+", default=list(WORKERS),
                   help="worker (GPU) counts to play")
    p.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES,
                   help="karpathy: one run beats the best; today: policy.py before issue 25; "
                        "today-2gpu: the same at the two-GPU threshold 0.0054; screen: a screen "
                        "at 0.0006 and one pair; pairs: this checkout's paired test (the loop's "
                        "--controls); sequential: this checkout's default rule")
    p.add_argument("--gpu-hours", type=float, default=GPU_HOURS,
                   help="a night's GPU-hours, shared by the workers")
    p.add_argument("--run-minutes", type=float, default=RUN_MINUTES, help="one run's length")
    p.add_argument("--wall-clock", action="store_true",
                   help="every worker runs for --gpu-hours (N workers spend N x the GPU-hours); "
                        "compare the rules per 120 runs")
    p.add_argument("--within-std", type=float, default=WITHIN_STD,
                   help="std of one run on one GPU (measured: 0.00026 on an H100 at 45 s)")
    p.add_argument("--offset-std", type=float, default=OFFSET_STD,
                   help="std of each GPU's fixed offset, drawn once a night (2 x H200 differed "
                        "by 0.0039-0.0069)")
    p.add_argument("--contention-std", type=float, default=CONTENTION_STD,
                   help="extra std of a run while other workers are busy (a guess)")
    p.add_argument("--drift-std", type=float, default=DRIFT_STD,
                   help="each GPU's random-walk step a run (a guess: measured, not resolved)")
    p.add_argument("--jitter", type=float, default=RUN_JITTER,
                   help="runs are 1 ± this long, so workers fall out of step")
    p.add_argument("--noop-fraction", type=float, default=NOOP_FRACTION,
                   help="share of proposals that change nothing")
    p.add_argument("--power-trials", type=int, default=200,
                   help="lone decisions per gain for the 80 %% power search (0: skip)")
    p.add_argument("--today-rev", default=TODAY_REV,
                   help="the commit whose autoresearch/policy.py is today's rule")
    p.add_argument("--alpha", type=float, default=policy.Rule.alpha,
                   help="pairs and sequential rules: the false-keep rate they state (None: "
                        f"policy's, {policy.ALPHA_RUNS:g} for sequential, {policy.ALPHA_PAIRS:g} "
                        "for pairs)")
    p.add_argument("--max-pairs", type=int, default=policy.Rule.max_pairs,
                   help="sequential rule: the cap on replica runs after the first (None: "
                        f"policy's, {policy.MAX_REPLICAS_RUNS})")
    p.add_argument("--screen-z", type=float, default=policy.SCREEN_Z_RUNS,
                   help="sequential rule: a candidate goes on only above this many se")
    p.add_argument("--schedule", choices=SCHEDULES, default="other",
                   help="who runs a decision's further runs: own: the worker that proposed it, "
                        "one after the other; any: whichever worker frees up first, ahead of its "
                        "own new idea; other: the same, preferring a worker that has not run that "
                        "commit for the decision (pairs become a crossover)")
    p.add_argument("--replica-batch", type=positive, default=1,
                   help="sequential rule: further runs asked for at once (side by side on "
                        "several workers with --schedule any/other)")
    p.add_argument("--first-wave", type=positive, default=Rule.first_wave,
                   help="the fitted rules' first wave: at least this many rounds of a baseline "
                        "run on every worker")
    p.add_argument("--noise-runs", type=int, default=Rule.noise_runs,
                   help="the fitted rules' first wave: rounds until at least 1 + this many "
                        "runs, as the loop's --noise-runs")
    p.add_argument("--rule-drift", type=float, default=policy.Rule.drift_std,
                   help="sequential rule: the drift a run it allows for (policy.Rule.drift_std)")
    p.add_argument("--bonferroni", action="store_true",
                   help="pairs and sequential rules: split alpha over the looks (the boundary "
                        "before the exact one)")
    p.add_argument("--fdr", choices=("lord", "saffron", "addis"),
                   help="sequential rule: each candidate's alpha from an online FDR procedure "
                        "(OnlineFdr: ADDIS, SAFFRON, LORD++) instead of --alpha")
    p.add_argument("--fdr-level", type=float, default=0.05, help="--fdr: the FDR it controls")
    p.add_argument("--fdr-w0", type=float, help="--fdr: the initial wealth (None: level / 2)")
    p.add_argument("--fdr-lambda", type=float, default=0.25,
                   help="--fdr saffron/addis: a p-value at or below it is a candidate")
    p.add_argument("--fdr-tau", type=float, default=0.5,
                   help="--fdr addis: a p-value above it is discarded (costs no wealth)")
    p.add_argument("--fdr-decay", type=float, default=1.6,
                   help="--fdr: the wealth's spending sequence falls as j^-decay")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if not args.results.exists():
        raise SystemExit(f"{args.results}: not found; give karpathy's results.tsv with --results")
    result = simulate(args)
    print(json.dumps(result, indent=1, default=str) if args.json else table(result))


if __name__ == "__main__":
    main()

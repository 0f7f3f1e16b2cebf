"""Summary statistics of a results.tsv: what happened overnight, in numbers.

Everything here is a pure function of the rows (plus, for the noise threshold, the loop's
state.json, and for the rates, its events.log), so the CLI summary, `status`, the plot and the
dashboard all show the same numbers and the tests can check them against hand-computed values.

The best is the head of the kept line: the commit of the last kept row. Its value is the night's
progress (ledger/values.progress): the baseline wave's value minus the measured gains of the
keeps, shown everywhere as `3.105079 (baseline - 2 kept gains)`. It moves only at a keep and
never up, and a keep shows the same gain in every view. A crash's val_bpb is 0.0 and never counts
as a measurement.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from autoresearch.artifacts.checkpoints import RUNS_DIR
from autoresearch.errors import UserError
from autoresearch.ledger.state import EVENTS, State, load_state, tag_dir
from autoresearch.ledger.values import WAVE_KINDS, model_of, progress
from autoresearch.memory.journal import JOURNAL
from autoresearch.memory.journal import load as load_journal
from autoresearch.model import Row, is_experiment, is_keep, is_measured
from autoresearch.policy import Noise, Rule, measure, signed
from autoresearch.target import DEFAULT, Metric

TOP_IMPROVEMENTS = 5  # how many of the biggest steps the summary lists
OUTLIER_HEADROOM = 1.0  # runs worse than baseline + this x the total improvement are outliers
Y_PAD = 0.06  # fraction of the y-range added above and below so markers are not cut in half


@dataclass
class Best:
    """The head of the kept line and its value (see the module docstring)."""

    commit: str
    value: float  # the night's progress after its keep
    keeps: int  # how many kept gains it is below the baseline
    experiment: int  # the run that brought the commit in: its first kept row
    description: str

    def __str__(self) -> str:
        return self.label()

    def label(self, metric: Metric = DEFAULT.metric) -> str:
        """`3.105079 (baseline - 2 kept gains)`: the metric's own value (`value` is its loss);
        a higher-is-better metric's gains are added to its baseline."""
        shown = f"{metric.value(self.value) + 0.0:.6f}"
        if not self.keeps:
            return f"{shown} (baseline)"
        sign = "-" if metric.direction == "lower" else "+"
        return f"{shown} (baseline {sign} {self.keeps} kept gain{'s' * (self.keeps > 1)})"


@dataclass
class Improvement:
    """One keep of the kept line: the best after it and its measured gain (delta > 0 =
    better), with how sure it is (pairs run, the gain's interval, its p-value)."""

    experiment: int
    commit: str
    val_bpb: float
    delta: float
    description: str
    pairs: int | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    extra: dict[str, float] = field(default_factory=dict)  # a target's extra metrics of the run

    @property
    def evidence(self) -> str:
        """`3 looks [+0.000400, +0.001200] p 0.01`, or "" for a keep without the columns. A look
        is one run of the candidate (the default rule) or one pair (--controls): results.tsv's
        `pairs` column counts either."""
        if self.pairs is None or self.low is None or self.high is None:
            return ""
        p = f" p {self.p_value:.2g}" if self.p_value is not None else ""
        return (f"{self.pairs} look{'s' * (self.pairs != 1)} [{signed(self.low)}, "
                f"{signed(self.high)}]{p}")


@dataclass
class WorkerRuns:
    """What one worker ran: a worker number on one GPU of one node (a resumed night that moved
    worker 1 to another GPU or node counts that as another line)."""

    worker: int | None  # None: rows written before the loop had the column
    gpu: str  # CUDA_VISIBLE_DEVICES, "" on the CPU
    device: str
    node: str
    runs: int
    kept: int
    hours: float | None  # its runs' time, as Summary.gpu_hours
    hours_estimated: bool


@dataclass
class Summary:
    """The night in numbers, in the README's words: runs (every train.py execution), experiments
    (the agents' proposals that ran: experiment, fix and port runs), keeps (kept experiments).
    kept + discarded + crashed = experiments."""

    experiments: int
    kept: int
    discarded: int
    crashed: int
    baseline_bpb: float | None  # the baseline wave's value (worker offsets removed)
    baseline_runs: int | None
    best_bpb: float | None  # the night's progress (see the module docstring)
    best_label: str  # the best as every view writes it
    best_commit: str | None
    best_experiment: int | None
    best_description: str
    improvement: float | None  # baseline - best: positive means the night helped
    improvement_pct: float | None
    experiments_per_hour: float | None  # over active_hours
    gpu_hours: float | None  # hours of runs, whatever ran them: see hours_label
    gpu_hours_estimated: bool  # True when some durations came from timestamp gaps
    hours_label: str  # "GPU hours", "CPU hours" or "run hours" (unknown)
    cost_usd: float | None  # None when no row reports an agent cost
    top_improvements: list[Improvement] = field(default_factory=list)
    workers: list[WorkerRuns] = field(default_factory=list)  # empty for other tools' files
    runs_saved: int | None = None  # proposals not run: the same program had run (the loop's)
    noise: str = ""  # the loop's noise model (state.json), as describe_noise writes it
    runs: int = 0  # every train.py execution: baselines, noise, control and confirmation runs too
    runs_by_kind: dict[str, int] = field(default_factory=dict)
    runs_per_hour: float | None = None  # over active_hours
    active_hours: float | None = None  # the loop's running time (see active_seconds)
    active_estimated: bool = False  # no events.log: the span of the rows' timestamps instead
    # the metric the values are of (baseline_bpb, best_bpb and the improvements' val_bpb hold
    # its own values; improvement is a gain, positive = better, whatever the direction)
    metric: str = DEFAULT.metric.name
    direction: str = DEFAULT.metric.direction


# ---- how numbers are written


def with_runs(value: float, runs: int) -> str:
    """A commit's value as shown everywhere: `3.105079 (mean of 3 runs)` or `3.109422 (1 run)`."""
    return f"{value:.6f} ({'1 run' if runs == 1 else f'mean of {runs} runs'})"


def worker_label(row: Row, with_node: bool = False) -> str:
    """Who ran a row, as every view writes it: `w1 gpu1`, `w0` on the CPU, `w1 gpu1 @node-a`
    with the node; "" for a row without a worker (another tool's file)."""
    if row.worker is None:
        return ""
    label = f"w{row.worker}" + (f" gpu{row.gpu}" if row.gpu else "")
    return label + (f" @{row.node}" if with_node and row.node else "")


def worker_labels(rows: list[Row]) -> list[str]:
    """Each row's worker_label, naming the node only when the rows come from more than one."""
    with_node = len({r.node for r in rows if r.worker is not None}) > 1
    return [worker_label(r, with_node) for r in rows]


def several_workers(rows: list[Row]) -> bool:
    """Whether more than one worker (or GPU, or node) ran these rows."""
    return len(set(worker_labels(rows)) - {""}) > 1


# ---- the best and the baseline


def experiment_numbers(rows: list[Row]) -> list[int]:
    """x values: our `experiment` column, or the row order for files that lack it."""
    if rows and all(r.experiment is not None for r in rows):
        return [r.experiment for r in rows]
    return list(range(1, len(rows) + 1))


def _heads(rows: list[Row], xs: list[int]) -> Iterator[Best | None]:
    """The best after each row, taking the rows in the order given: the baseline, then each keep
    of the night's progress as its own row comes (a keep's confirmation row repeats it)."""
    chain = progress(rows)
    steps = {id(s.row): (k, s) for k, s in enumerate(chain.steps, start=1)}
    head = None
    for x, row in zip(xs, rows, strict=True):
        if head is None and chain.baseline is not None and is_measured(row) and \
                row.status == "keep":
            head = Best(row.commit, chain.baseline, 0, x, row.description)
        if id(row) in steps:
            k, step = steps[id(row)]
            head = Best(row.commit, step.best, k, x, row.description)
        yield head


def best(rows: list[Row]) -> Best | None:
    """The head of the kept line and the night's progress at it. None until a run is kept."""
    heads = list(_heads(rows, experiment_numbers(rows)))
    return heads[-1] if heads else None


def running_best(rows: list[Row]) -> list[float | None]:
    """The best's value after each row (None until the first keep), for the charts.

    Rows are taken in experiment-number order, the charts' x axis: with several workers a run's
    row can reach the file after rows of later runs. The keeps of the kept line are numbered in
    the order they were kept, so the line only steps down, and only at a keep.
    """
    xs = experiment_numbers(rows)
    order = sorted(range(len(rows)), key=xs.__getitem__)
    values: list[float | None] = [None] * len(rows)
    heads = _heads([rows[i] for i in order], [xs[i] for i in order])
    for i, head in zip(order, heads, strict=True):
        values[i] = head.value if head else None
    return values


def baseline_row(rows: list[Row]) -> Row | None:
    """The row marked kind=baseline, else the first measured row."""
    measured = [r for r in rows if is_measured(r)]
    marked = [r for r in measured if r.kind == "baseline"]
    return (marked or measured or [None])[0]


def improvements(rows: list[Row]) -> list[Improvement]:
    """Every keep of the night's progress: the best after it, its measured gain and evidence."""
    xs = dict(zip((id(r) for r in rows), experiment_numbers(rows), strict=True))
    return [Improvement(xs[id(s.row)], s.row.commit, s.best, s.gain, s.row.description,
                        s.row.pairs, s.row.gain_low, s.row.gain_high, s.row.p_value)
            for s in progress(rows).steps]


def hours_label(rows: list[Row]) -> str:
    """What the run hours were spent on: "CPU hours" when every run that says (its device, else
    its profile) ran on the CPU, "GPU hours" when any ran elsewhere, "run hours" when none says."""
    ran_on = {(r.device or r.profile).strip().lower() for r in rows if r.device or r.profile}
    if not ran_on:
        return "run hours"
    return "CPU hours" if ran_on == {"cpu"} else "GPU hours"


def _timestamp(row: Row) -> datetime | None:
    try:
        return datetime.fromisoformat(row.timestamp) if row.timestamp else None
    except ValueError:
        return None


def _worker_key(row: Row) -> tuple:
    """Whose runs follow one another: a worker number on one GPU of one node."""
    return row.node, row.worker is not None, row.worker or 0, row.gpu, row.device


def run_seconds(rows: list[Row]) -> tuple[float | None, bool]:
    """Total run time in seconds, and whether part of it is estimated.

    A row counts its total_seconds; a row without it (a crash, another tool's file) counts the
    gap since the timestamp of its worker's previous row, an upper bound that includes the
    agent's thinking (workers run side by side: another worker's row says nothing).
    """
    total, estimated, any_known = 0.0, False, False
    previous: dict[tuple, datetime] = {}  # worker -> the timestamp of its latest row
    for r in rows:
        stamp, before = _timestamp(r), previous.get(_worker_key(r))
        if r.total_seconds is not None:
            total += r.total_seconds
            any_known = True
        elif stamp is not None and before is not None and stamp > before:
            total += (stamp - before).total_seconds()
            estimated = any_known = True
        if stamp is not None:
            previous[_worker_key(r)] = stamp
    return (total if any_known else None), estimated


def active_seconds(events: Path | None, rows: list[Row]) -> tuple[float | None, bool]:
    """How long the loop ran, and whether that is an estimate. A session runs from a `loop
    started` line of the tag's events.log to its last line or row before the next session:
    the time between sessions (no loop running) is not the loop's. Without an events.log
    (another tool's file) the span of the rows' timestamps, else their summed run time."""
    stamps = [(s, False) for s in map(_timestamp, rows) if s is not None]
    try:
        lines = events.read_text(errors="replace").splitlines() if events else []
    except OSError:
        lines = []
    for line in lines:
        stamp, _, message = line.partition(" ")
        when = _parse_time(stamp)
        if when is not None:
            stamps.append((when, message.startswith("loop started")))
    if not any(start for _, start in stamps):
        stamps.sort(key=lambda s: s[0])
        if len(stamps) >= 2 and stamps[-1][0] > stamps[0][0]:
            return (stamps[-1][0] - stamps[0][0]).total_seconds(), True
        return run_seconds(rows)[0], True
    total, begun, last = 0.0, None, None
    for when, start in sorted(stamps, key=lambda s: (s[0], not s[1])):
        if start or begun is None:
            total += (last - begun).total_seconds() if begun else 0.0
            begun = when
        last = when
    return total + (last - begun).total_seconds(), False


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def per_hour(count: int, seconds: float | None) -> float | None:
    return count / (seconds / 3600) if seconds else None


def runs_by_worker(rows: list[Row]) -> list[WorkerRuns]:
    """One line per worker on its GPU and node, in node, worker, GPU order; none when no row says
    which worker ran it."""
    if all(r.worker is None for r in rows):
        return []
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault(_worker_key(row), []).append(row)
    out = []
    for key in sorted(groups):
        mine = groups[key]
        first = mine[0]
        seconds, estimated = run_seconds(mine)
        out.append(WorkerRuns(
            worker=first.worker, gpu=first.gpu, device=first.device, node=first.node,
            runs=len(mine), kept=sum(is_keep(r) for r in mine),
            hours=seconds / 3600 if seconds is not None else None, hours_estimated=estimated))
    return out


def summarize(rows: list[Row], top: int = TOP_IMPROVEMENTS, events: Path | None = None,
              metric: Metric = DEFAULT.metric,
              extras: dict[int, dict[str, float]] | None = None) -> Summary:
    """The Summary of a tag's rows (their val_bpb the loss of `metric`), its values the metric's
    own; `events` is its events.log, which dates the loop's sessions for the rates; `extras`:
    the target's extra metrics of each run, by run number (kept_extras)."""
    extras = extras or {}
    base, head, chain = baseline_row(rows), best(rows), progress(rows)
    wave = sum(r.kind in WAVE_KINDS and is_measured(r) for r in rows) or 1
    base_value = (chain.baseline, wave) if base and chain.baseline is not None else None
    improvement = base_value[0] - head.value if base_value and head else None
    seconds, estimated = run_seconds(rows)
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    experiments = [r for r in rows if is_experiment(r)]
    active, active_estimated = active_seconds(events, rows)
    return Summary(
        experiments=len(experiments),
        kept=sum(r.status == "keep" for r in experiments),
        discarded=sum(r.status == "discard" for r in experiments),
        crashed=sum(r.status == "crash" for r in experiments),
        baseline_bpb=metric.value(base_value[0]) if base_value else None,
        baseline_runs=base_value[1] if base_value else None,
        best_bpb=metric.value(head.value) if head else None,
        best_label=head.label(metric) if head else "",
        best_commit=head.commit if head else None,
        best_experiment=head.experiment if head else None,
        best_description=head.description if head else "",
        improvement=improvement,
        improvement_pct=100 * improvement / abs(base_value[0]) if improvement is not None and
        base_value[0] else None,
        experiments_per_hour=per_hour(len(experiments), active),
        gpu_hours=seconds / 3600 if seconds is not None else None,
        gpu_hours_estimated=estimated,
        hours_label=hours_label(rows),
        cost_usd=sum(costs) if costs else None,
        top_improvements=sorted((replace(i, val_bpb=metric.value(i.val_bpb),
                                         extra=extras.get(i.experiment, {}))
                                 for i in improvements(rows)), key=lambda i: -i.delta)[:top],
        workers=runs_by_worker(rows),
        runs=len(rows),
        runs_by_kind=dict(Counter(r.kind or "experiment" for r in rows)),
        runs_per_hour=per_hour(len(rows), active),
        active_hours=active / 3600 if active is not None else None,
        active_estimated=active_estimated,
        metric=metric.name,
        direction=metric.direction,
    )


def y_limits(rows: list[Row], threshold: float | None = None) -> tuple[float, float] | None:
    """A y-range that shows the improvements: crashes (0.0) and blow-ups (3.2) must not squash it.

    Runs worse than the baseline + OUTLIER_HEADROOM x (baseline - best) are left out of the range;
    the charts draw every run above the upper limit as a marker on the top edge. The range is
    padded by Y_PAD so markers inside are not cut in half, and a run that would land in that
    padding is taken into the range: each run is inside with room to spare, or above the limit.
    The noise band under the best stays in view.
    """
    values = [r.val_bpb for r in rows if is_measured(r)]
    if not values:
        return None
    lo = min(values)
    reference = progress(rows).baseline or max(values)
    span = max(reference - lo, 0.002 * lo)  # a flat night still gets a readable band
    hi = max(v for v in values if v <= reference + OUTLIER_HEADROOM * span)
    lo -= threshold or 0.0
    while True:
        pad = Y_PAD * (hi - lo or span)
        in_padding = [v for v in values if hi < v <= hi + pad]
        if not in_padding:
            return lo - pad, hi + pad
        hi = max(in_padding)


def estimate_threshold(rows: list[Row]) -> float | None:
    """The loop's min detectable gain (policy.measure) from the noise model of these rows, once
    some commit ran twice; None before."""
    model = model_of(rows)
    return measure(model, [], Rule()).threshold if model.within_std is not None else None


def kept_extras(repo: Path, tag: str | None) -> dict[int, dict[str, float]]:
    """The extra metrics each kept run of the tag reported (its journal), by run number; {}
    without a journal (another tool's results.tsv) or a target that names none."""
    if tag is None:
        return {}
    return {e.n: e.extra for e in load_journal(tag_dir(repo, tag) / JOURNAL)
            if e.status == "keep" and e.extra}


def runs_saved(repo: Path, tag: str | None) -> int | None:
    """Proposals the loop did not run because the same program had run (state.json), or None."""
    try:
        state = load_state(repo, tag) if tag else None
    except UserError:
        state = None
    return state.duplicates if state else None


def describe_noise(noise: Noise) -> str:
    """The noise model in one line, for `status` and `summary`: the spread within a worker and
    each worker's offset."""
    std = f"{noise.std:.6f} ({noise.dof} dof)" if noise.std is not None else "not measured yet"
    offsets = ", ".join(f"w{w} {signed(o)}" for w, o in sorted(noise.offsets.items()))
    spread = f"{noise.spread:.6f}" if noise.spread is not None else "-"
    return (f"within-worker std {std}; worker offsets {offsets or '-'}; min detectable gain "
            f"{noise.threshold:.6f}; {len(noise.values)} baseline runs, spread {spread}")


def noise_summary(repo: Path, tag: str | None) -> str:
    """The loop's noise model of a tag from its state.json, or "" without one."""
    try:
        state = load_state(repo, tag) if tag else None
    except UserError:
        state = None
    return noise_words(repo, state) if state and state.noise else ""


def noise_words(repo: Path, state: State) -> str:
    """describe_noise, and how busy the workers were while the spread was measured."""
    return describe_noise(state.noise) + busy_while_measured(repo, state.tag,
                                                             len(state.noise.offsets))


def busy_while_measured(repo: Path, tag: str, workers: int) -> str:
    """How busy the GPUs were while the first wave measured the spread (each run's metrics.json
    says how many workers trained at once while it ran): the spread includes the load the
    workers put on each other only when all of them were busy. "" when no run says."""
    busy = []
    for path in sorted((repo / RUNS_DIR / tag).glob("*/metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if metrics.get("kind") in WAVE_KINDS and metrics.get("busy_workers"):
            busy.append(int(metrics["busy_workers"]))
    if not busy or workers < 2:
        return ""
    if min(busy) >= workers:
        return f"; measured with all {workers} workers busy"
    return (f"; measured with {min(busy)}-{max(busy)} of {workers} workers busy (the spread may "
            f"miss some of the load they put on each other)")


def events_log(repo: Path | None, tag: str | None) -> Path | None:
    """The tag's events.log (it dates the loop's sessions), when `repo` is a loop checkout."""
    return tag_dir(repo, tag) / EVENTS if repo is not None and tag else None


def noise_threshold(repo: Path, tag: str | None, rows: list[Row]) -> float | None:
    """The loop's threshold from .autoresearch/<tag>/state.json, else an estimate, else None."""
    try:
        state = load_state(repo, tag) if tag else None
    except UserError:  # a damaged state file must not take the plot or the dashboard down
        state = None
    if state and state.noise and isinstance(state.noise.threshold, (int, float)):
        return float(state.noise.threshold)
    return estimate_threshold(rows)

"""Summary statistics of a results.tsv: what happened overnight, in numbers.

Everything here is a pure function of the rows (plus, for the noise threshold, the loop's
state.json), so the CLI summary, the plot and the dashboard all show the same numbers and the tests
can check them against hand-computed values. The "best" is the lowest val_bpb among kept runs; a
crash's val_bpb is 0.0 and never counts as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.ledger.results import Row
from autoresearch.ledger.state import load_state
from autoresearch.policy import DEFAULT_FLOOR, measure

TOP_IMPROVEMENTS = 5  # how many of the biggest steps the summary lists
OUTLIER_HEADROOM = 1.0  # runs worse than baseline + this x the total improvement are outliers
Y_PAD = 0.06  # fraction of the y-range added above and below so markers are not cut in half


@dataclass
class Improvement:
    """One kept run that lowered the best val_bpb, and by how much (delta > 0 = better)."""

    experiment: int
    commit: str
    val_bpb: float
    delta: float
    description: str


@dataclass
class Summary:
    experiments: int
    kept: int
    discarded: int
    crashed: int
    baseline_bpb: float | None
    best_bpb: float | None
    best_commit: str | None
    best_experiment: int | None
    best_description: str
    improvement: float | None  # baseline - best: positive means the night helped
    improvement_pct: float | None
    experiments_per_hour: float | None
    gpu_hours: float | None
    gpu_hours_estimated: bool  # True when some durations came from timestamp gaps
    cost_usd: float | None  # None when no row reports an agent cost
    top_improvements: list[Improvement] = field(default_factory=list)


def is_measured(row: Row) -> bool:
    """A run that produced a real val_bpb (crashes read 0.0; an unparsable cell reads nan)."""
    return row.status != "crash" and math.isfinite(row.val_bpb) and row.val_bpb > 0


def experiment_numbers(rows: list[Row]) -> list[int]:
    """x values: our `experiment` column, or the row order for files that lack it."""
    if rows and all(r.experiment is not None for r in rows):
        return [r.experiment for r in rows]
    return list(range(1, len(rows) + 1))


def running_best(rows: list[Row]) -> list[float | None]:
    """The best kept val_bpb after each row (None until the first kept run)."""
    best, out = None, []
    for r in rows:
        if r.status == "keep" and is_measured(r) and (best is None or r.val_bpb < best):
            best = r.val_bpb
        out.append(best)
    return out


def baseline_row(rows: list[Row]) -> Row | None:
    """The row marked kind=baseline, else the first measured row."""
    measured = [r for r in rows if is_measured(r)]
    marked = [r for r in measured if r.kind == "baseline"]
    return (marked or measured or [None])[0]


def best_row(rows: list[Row]) -> Row | None:
    kept = [r for r in rows if r.status == "keep" and is_measured(r)]
    return min(kept, key=lambda r: r.val_bpb) if kept else None


def improvements(rows: list[Row]) -> list[Improvement]:
    """Every kept run after the first, with its improvement over the best before it."""
    out, best = [], None
    for x, r in zip(experiment_numbers(rows), rows, strict=True):
        if r.status != "keep" or not is_measured(r):
            continue
        if best is not None:
            out.append(Improvement(x, r.commit, r.val_bpb, best - r.val_bpb, r.description))
        best = r.val_bpb if best is None else min(best, r.val_bpb)
    return out


def _timestamp(row: Row) -> datetime | None:
    try:
        return datetime.fromisoformat(row.timestamp) if row.timestamp else None
    except ValueError:
        return None


def run_seconds(rows: list[Row]) -> tuple[float | None, bool]:
    """Total run time in seconds, and whether part of it is estimated.

    A row counts its total_seconds; a row without it (a crash, another tool's file) counts the
    gap since the previous row's timestamp, an upper bound that includes the agent's thinking.
    """
    total, estimated, any_known = 0.0, False, False
    previous = None
    for r in rows:
        stamp = _timestamp(r)
        if r.total_seconds is not None:
            total += r.total_seconds
            any_known = True
        elif stamp is not None and previous is not None and stamp > previous:
            total += (stamp - previous).total_seconds()
            estimated = any_known = True
        previous = stamp or previous
    return (total if any_known else None), estimated


def experiments_per_hour(rows: list[Row]) -> float | None:
    """Finished runs per wall-clock hour: from timestamps, else from summed run time."""
    stamps = [s for s in map(_timestamp, rows) if s is not None]
    if len(stamps) >= 2 and stamps[-1] > stamps[0]:
        return (len(stamps) - 1) / ((stamps[-1] - stamps[0]).total_seconds() / 3600)
    seconds, _ = run_seconds(rows)
    return len(rows) / (seconds / 3600) if seconds else None


def summarize(rows: list[Row], top: int = TOP_IMPROVEMENTS) -> Summary:
    base, best = baseline_row(rows), best_row(rows)
    improvement = base.val_bpb - best.val_bpb if base and best else None
    seconds, estimated = run_seconds(rows)
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    best_index = rows.index(best) if best else None
    return Summary(
        experiments=len(rows),
        kept=sum(r.status == "keep" for r in rows),
        discarded=sum(r.status == "discard" for r in rows),
        crashed=sum(r.status == "crash" for r in rows),
        baseline_bpb=base.val_bpb if base else None,
        best_bpb=best.val_bpb if best else None,
        best_commit=best.commit if best else None,
        best_experiment=experiment_numbers(rows)[best_index] if best else None,
        best_description=best.description if best else "",
        improvement=improvement,
        improvement_pct=100 * improvement / base.val_bpb if improvement is not None else None,
        experiments_per_hour=experiments_per_hour(rows),
        gpu_hours=seconds / 3600 if seconds is not None else None,
        gpu_hours_estimated=estimated,
        cost_usd=sum(costs) if costs else None,
        top_improvements=sorted(improvements(rows), key=lambda i: -i.delta)[:top],
    )


def y_limits(rows: list[Row], threshold: float | None = None) -> tuple[float, float] | None:
    """A y-range that shows the improvements: crashes (0.0) and blow-ups (3.2) must not squash it.

    Runs worse than baseline + OUTLIER_HEADROOM * (baseline - best) are left out of the range;
    the plots draw them clipped at the top edge. The noise band under the best stays in view.
    """
    values = [r.val_bpb for r in rows if is_measured(r)]
    if not values:
        return None
    lo = min(values)
    base = baseline_row(rows)
    reference = base.val_bpb if base else max(values)
    span = max(reference - lo, 0.002 * lo)  # a flat night still gets a readable band
    hi = max(v for v in values if v <= reference + OUTLIER_HEADROOM * span)
    lo -= threshold or 0.0
    pad = Y_PAD * (hi - lo or span)
    return lo - pad, hi + pad


def select_tag(rows: list[Row], tag: str | None) -> tuple[list[Row], str | None]:
    """The rows of one loop tag: the given one, else the tag of the newest row (if any)."""
    tags = {r.tag for r in rows if r.tag}
    if tag is None:
        if not tags:
            return rows, None
        tag = next(r.tag for r in reversed(rows) if r.tag)
    if tag not in tags:
        known = ", ".join(sorted(tags)) or "none (this file has no tag column)"
        raise UserError(f"no rows with tag {tag!r} in results.tsv; tags present: {known}")
    return [r for r in rows if r.tag == tag], tag


def estimate_threshold(rows: list[Row]) -> float | None:
    """The loop's own rule (noise.py) applied to the repeated baseline runs, if there are 2+."""
    repeats = [r.val_bpb for r in rows if r.kind in ("baseline", "noise") and is_measured(r)]
    return measure(repeats, DEFAULT_FLOOR, len(repeats))["threshold"] if len(repeats) >= 2 else None


def noise_threshold(repo: Path, tag: str | None, rows: list[Row]) -> float | None:
    """The loop's threshold from .autoresearch/<tag>/state.json, else an estimate, else None."""
    try:
        state = load_state(repo, tag) if tag else None
    except UserError:  # a damaged state file must not take the plot or the dashboard down
        state = None
    if state and state.noise and isinstance(state.noise.get("threshold"), (int, float)):
        return float(state.noise["threshold"])
    return estimate_threshold(rows)

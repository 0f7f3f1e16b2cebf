"""One value per commit and one line of progress per night, from results.tsv rows alone.

Every view (the loop's lines, `status`, `summary`, `journal`, `plot`, the dashboard) takes its
numbers from here, so a keep shows the same number everywhere:

- a commit's value: one estimate from all its runs, corrected for the worker offsets of the
  noise model (policy.fit), with a standard error;
- the night's best: the baseline wave's value minus the kept changes' measured gains, in the
  order they were kept. It moves only at a keep, and never up (a keep's gain clears the floor).
"""

from __future__ import annotations

from dataclasses import dataclass

from autoresearch.model import Row, is_keep, is_measured
from autoresearch.policy import Fit, Run, fit

WAVE_KINDS = ("baseline", "noise")


def runs_of(rows: list[Row]) -> list[Run]:
    """The measured runs, as the noise model sees them (a row of another tool: worker 0)."""
    return [Run(r.commit, str(r.worker or 0), r.val_bpb) for r in rows if is_measured(r)]


def model_of(rows: list[Row]) -> Fit:
    """The noise model fitted to every measured run of these rows."""
    return fit(runs_of(rows))


def keep_gain(row: Row, rows: list[Row], before: str) -> float:
    """What a keep moved the best by: its measured gain (the keep test's mean); for a keep
    without the evidence columns (older versions, other tools), its commit's mean against its
    parent's (the `parent` column, else the commit kept before it), never below 0."""
    if row.gain is not None:
        return row.gain
    parent, own = _mean(rows, row.parent or before), _mean(rows, row.commit)
    return max(0.0, parent - own) if parent is not None and own is not None else 0.0


def _mean(rows: list[Row], commit: str) -> float | None:
    values = [r.val_bpb for r in rows if r.commit == commit and is_measured(r)]
    return sum(values) / len(values) if values else None


@dataclass
class Step:
    """The best after one keep."""

    row: Row  # the kept change's own row
    gain: float  # its measured gain (positive = better)
    best: float  # the night's best after it


@dataclass
class Progress:
    """The night's chain of keeps, from the baseline's value."""

    baseline: float | None  # the baseline wave's value (None before the baseline ran)
    steps: list[Step]

    @property
    def best(self) -> float | None:
        return self.steps[-1].best if self.steps else self.baseline



def progress(rows: list[Row]) -> Progress:
    """The night's progress from one tag's rows (see the module docstring). The baseline's value
    is fitted from the baseline wave only, so later control runs of it do not move the best."""
    wave = [r for r in rows if r.kind in WAVE_KINDS]
    base = next((r for r in rows if r.kind == "baseline" and is_measured(r)), None)
    if base is None:  # another tool's file: its first measured row is the baseline
        base = next((r for r in rows if is_measured(r)), None)
        wave = [base] if base else []
    if base is None:
        return Progress(None, [])
    model = model_of(wave)
    best = model.values[base.commit]
    steps, before = [], base.commit
    for row in rows:
        if is_keep(row) and row is not base:
            gain = keep_gain(row, rows, before)
            best -= gain
            before = row.commit
            steps.append(Step(row, gain, best))
    return Progress(model.values[base.commit], steps)

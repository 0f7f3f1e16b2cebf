"""How much better is better: the keep threshold from run-to-run noise, and the decision rule.

The same train.py does not give the same val_bpb twice (data order, kernels, timing-dependent
step counts). So before the first proposal the loop runs the baseline a few more times and sets

    threshold = max(floor, 2 * sample standard deviation of the baseline runs)

A result is kept when it beats the best by more than the threshold. A gain in the grey zone,
(threshold, CONFIRM_MARGIN * threshold], gets one confirmation run of the same commit and is kept
only if the mean of both runs still beats the best by more than the threshold.
"""

from __future__ import annotations

import statistics

DEFAULT_FLOOR = 0.001  # bpb: below this no change is worth a commit, however quiet the GPU
STD_MULTIPLIER = 2.0
CONFIRM_MARGIN = 2.0  # gains up to this many thresholds need a second run
RULE = f"max(floor, {STD_MULTIPLIER:g} x sample std of the baseline runs)"


def measure(values: list[float], floor: float, runs_requested: int) -> dict:
    """The threshold and how it was measured, as stored in state.json and shown by `status`."""
    std = statistics.stdev(values) if len(values) >= 2 else None
    spread = max(values) - min(values) if values else None
    threshold = max(floor, STD_MULTIPLIER * std) if std is not None else floor
    if runs_requested == 0:
        how = "noise runs off: floor only"
    elif std is None:
        how = "fewer than 2 finished baseline runs: floor only"
    else:
        how = RULE
    return {"threshold": threshold, "floor": floor, "values": values, "std": std,
            "spread": spread, "runs_requested": runs_requested, "rule": how}


def judge(best: float, value: float, threshold: float) -> str:
    """'keep', 'confirm' (grey zone: run it again) or 'discard' for a finished run."""
    gain = best - value
    if gain > CONFIRM_MARGIN * threshold:
        return "keep"
    if gain > threshold:
        return "confirm"
    return "discard"


def confirmed(best: float, values: list[float], threshold: float) -> bool:
    """After a confirmation run: does the mean of the runs still clear the threshold?"""
    return best - statistics.fmean(values) > threshold

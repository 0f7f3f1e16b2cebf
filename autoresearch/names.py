"""File names and defaults that several parts of the loop share. Imports nothing of ours, so
anything (the options, the executors, the ledger) can take them without importing up."""

from __future__ import annotations

import sys

RESULTS = "results.tsv"  # the ledger, in the repository root
METRICS = "metrics.json"  # in each run folder: how the run ended and every number it reported
# the harness: sha256 checked around every run
FIXED_FILES = ("prepare.py", "constants.py", "harness.py")

DEFAULT_FLOOR = 0.0  # bpb: the user's minimum gain (--noise-floor); the test sets the bar
# replicas one candidate may get after its first run (--max-pairs), every one displacing an idea.
# The candidate's own runs: 3 (a fourth look bought 0.5-1.4 points of a simulated night's gain at a
# run-to-run std of 0.0009 and nothing at 0.0003, BENCHMARKS.md); (control, candidate) pairs: 2
MAX_REPLICAS_RUNS = 3
MAX_REPLICAS_PAIRS = 2
# a worker's drift (--drift-std), the std of its random-walk step per run: the parent's runs are
# older than the candidate's, so the gain's standard error grows with their age. A guess that the
# H100 series of BENCHMARKS.md does not contradict (no trend in 30 minutes): it costs 0.1 % of a
# simulated night's gain, and 1e-4 would halve the false keeps of a machine that drifts that fast
DEFAULT_DRIFT_STD = 0.00002
GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL: time for train.py to release the GPU
SAMPLE_TIMEOUT = 300.0  # writing a kept run's sample_output.txt


def default_train_cmd() -> list[str]:
    """How a run starts train.py: with this process's Python."""
    return [sys.executable, "train.py"]

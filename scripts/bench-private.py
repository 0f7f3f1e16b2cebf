"""Held-out verification on this machine: what one verification costs, and the private noise.

    AUTORESEARCH_CACHE=/prepared uv run scripts/bench-private.py            # default train.py x2
    uv run scripts/bench-private.py --runs 3 --change MATRIX_LR=0.05          # and one change
    AUTORESEARCH_TIME_BUDGET=60 uv run scripts/bench-private.py               # shorter runs

Runs the default train.py --runs times (and, with --change, once more with top-level constants
changed), each saving its weights, then scores every run's weights on the private split exactly
as the loop does (a sealed bubblewrap process on the same GPU, the fixed evaluate_bpb). Prints
one JSON object: each run's public and private val_bpb and the seconds its verification took,
the spread of both over the default runs (the private noise: 2 x its standard deviation, as the
loop's rule) and, for the change, its public and private gains over the default runs' mean.
Data prepared before the private split gets it first (prepare.py --private).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch.config import Harness  # noqa: E402
from autoresearch.execution import sandbox  # noqa: E402
from autoresearch.execution.parse import read_run  # noqa: E402
from autoresearch.verify.private import prepare_private, private_split, score  # noqa: E402

HARNESS = ("train.py", "prepare.py", "constants.py", "harness.py")


def changed(text: str, changes: list[str]) -> str:
    """train.py with each NAME=VALUE top-level constant set."""
    for change in changes:
        name, _, value = change.partition("=")
        text, count = re.subn(rf"^{re.escape(name)} = .*$", f"{name} = {value}", text, flags=re.M)
        if count != 1:
            sys.exit(f"error: --change {change}: train.py has no top-level constant {name}")
    return text


def train(folder: Path, code: str) -> dict[str, float]:
    """One train.py run in `folder`, weights saved there; its summary metrics (val_bpb is the
    public one)."""
    folder.mkdir(parents=True)
    for name in HARNESS:
        shutil.copy(ROOT / name, folder / name)
    (folder / "train.py").write_text(code)
    env = dict(os.environ, AUTORESEARCH_CHECKPOINT_DIR=str(folder))
    proc = subprocess.run([sys.executable, "train.py"], cwd=folder, env=env,
                          capture_output=True, text=True)
    (folder / "run.log").write_text(proc.stdout + proc.stderr)
    verdict = read_run(proc.returncode, proc.stdout + proc.stderr, False)
    if verdict.metrics is None:
        sys.exit(f"error: train.py failed ({verdict.reason}); see {folder / 'run.log'}")
    return verdict.metrics


def measure(folder: Path, code: str, sealed: bool) -> dict:
    metrics = train(folder, code)
    start = time.monotonic()
    private = score(folder, folder, os.environ.get("CUDA_VISIBLE_DEVICES"), sealed)
    result = {"public": metrics["val_bpb"], "private": private,
              "verify_seconds": round(time.monotonic() - start, 1),
              # the run's speed, so a device figure of train.py comes with every verification
              **{k: metrics[k] for k in ("mfu_percent", "total_tokens_M", "training_seconds")
                 if k in metrics}}
    print(f"{folder.name}: {json.dumps(result)}", file=sys.stderr, flush=True)  # progress
    return result


def spread(values: list[float]) -> dict:
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std,
            "threshold_2std": 2 * std if std is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="default train.py runs (>= 2)")
    parser.add_argument("--change", action="append", default=[], metavar="NAME=VALUE",
                        help="also run train.py with this constant changed (repeatable)")
    args = parser.parse_args()
    if args.runs < 2:
        sys.exit("error: --runs must be at least 2: the noise needs two runs")
    cache = Harness.read(ROOT).cache_dir
    if private_split(cache) is None:
        print("preparing the private held-out split (once): uv run prepare.py --private",
              file=sys.stderr)
        failed = prepare_private(ROOT, cache)
        if failed:
            sys.exit(f"error: `uv run prepare.py --private` failed: {failed}")
    why = sandbox.unavailable()
    if why:
        print(f"warning: {why}: verifying unsealed", file=sys.stderr)
    base = (ROOT / "train.py").read_text()
    with tempfile.TemporaryDirectory(prefix="bench-private-") as tmp:
        runs = [measure(Path(tmp) / f"run{i}", base, why is None) for i in range(args.runs)]
        report = {"runs": runs, "public": spread([r["public"] for r in runs]),
                  "private": spread([r["private"] for r in runs]),
                  "verify_seconds": statistics.fmean(r["verify_seconds"] for r in runs)}
        if args.change:
            run = measure(Path(tmp) / "change", changed(base, args.change), why is None)
            report["change"] = dict(
                run, changes=args.change,
                public_gain=report["public"]["mean"] - run["public"],
                private_gain=report["private"]["mean"] - run["private"])
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

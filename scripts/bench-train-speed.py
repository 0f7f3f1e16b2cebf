"""How fast train.py files run on this machine, side by side: val_bpb, MFU and tok/s of each.

    git show main:train.py > /tmp/main_train.py                   # before
    uv run scripts/bench-train-speed.py /tmp/main_train.py train.py --runs 2

Each run is one given file as train.py in a fresh folder beside this checkout's harness
(prepare.py, constants.py, harness.py), so an older train.py runs as it did, trained for
--budget seconds (AUTORESEARCH_TIME_BUDGET, 45 by default) on the prepared data of the profile
in the environment. The files take turns (A B A B ...), so drift of the machine falls on all of
them. Per run it prints val_bpb and mfu_percent from the summary block, and tok/s as
total_tokens_M / training_seconds; then each file's mean. Exit status 1 if a run failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch.execution.parse import last_error, parse_summary  # noqa: E402

HARNESS = ("prepare.py", "constants.py", "harness.py")  # what a train.py imports beside it
DEFAULT_BUDGET = 45


def speed(summary: dict[str, float]) -> dict[str, float]:
    """The three figures compared: val_bpb, mfu_percent, and tok/s over the whole run."""
    return {"val_bpb": summary["val_bpb"], "mfu_percent": summary["mfu_percent"],
            "tok/s": summary["total_tokens_M"] * 1e6 / summary["training_seconds"]}


def train_once(train: Path, budget: float, log: Path) -> dict[str, float] | str:
    """One run of `train` as train.py beside the harness: its figures, or why it failed."""
    with tempfile.TemporaryDirectory(prefix="train-speed-") as folder:
        for name in HARNESS:
            shutil.copy(ROOT / name, Path(folder) / name)
        shutil.copy(train, Path(folder) / "train.py")
        env = dict(os.environ, AUTORESEARCH_TIME_BUDGET=f"{budget:g}")
        env.pop("AUTORESEARCH_CHECKPOINT_DIR", None)  # the speed alone: no weights written
        proc = subprocess.run([sys.executable, "train.py"], cwd=folder, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace")
    log.write_text(proc.stdout)
    summary = parse_summary(proc.stdout)
    if proc.returncode != 0 or summary is None:
        return f"exit {proc.returncode}: {last_error(proc.stdout) or 'no summary block'}"
    return speed(summary)


def line(label: str, figures: dict[str, float]) -> str:
    return (f"{label}: val_bpb {figures['val_bpb']:.6f} | mfu_percent "
            f"{figures['mfu_percent']:.2f} | tok/s {figures['tok/s']:,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-train-speed.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("train", nargs="+", type=Path, help="train.py files to compare")
    parser.add_argument("--runs", type=int, default=1, help="runs of each file (default 1)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help=f"training seconds per run (default {DEFAULT_BUDGET})")
    parser.add_argument("--log-dir", type=Path, default=Path("runs") / "train-speed",
                        help="where each run's log goes (default runs/train-speed)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.train if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.log_dir.mkdir(parents=True, exist_ok=True)
    letters = [chr(ord("A") + i) for i in range(len(args.train))]
    results: dict[str, list[dict[str, float]]] = {letter: [] for letter in letters}
    failed = False
    for run in range(1, args.runs + 1):
        for letter, train in zip(letters, args.train, strict=True):
            got = train_once(train, args.budget, args.log_dir / f"{letter}-{run}.log")
            if isinstance(got, str):
                failed = True
                print(f"error: {letter} {train} run {run} failed ({got})", flush=True)
                continue
            results[letter].append(got)
            print(line(f"{letter} {train} run {run}", got), flush=True)
    for letter, train in zip(letters, args.train, strict=True):
        runs = results[letter]
        if runs:
            mean = {key: statistics.fmean(r[key] for r in runs) for key in runs[0]}
            print(line(f"{letter} {train} mean of {len(runs)}", mean))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

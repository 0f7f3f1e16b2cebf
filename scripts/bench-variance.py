"""Why two runs of the same train.py differ: the share of each source of run-to-run noise.

    AUTORESEARCH_CACHE=/prepared python3 scripts/bench-variance.py --budget 45 --runs 4 \
        --fixed-runs 3 --json /tmp/variance.json
    AUTORESEARCH_CACHE=/prepared python3 scripts/bench-variance.py --budget 300 --runs 1

Every run is the real train.py in a fresh process, its TIME_BUDGET replaced, with the loop's
checkpoint variable set so its weights are saved. Three kinds of measurement:

  timed runs   as the loop runs them: the time budget decides the step count, so a run that
               happens to be a little slower trains fewer steps.
  fixed runs   the same, but train.py's clock advances by a fixed amount per step, so every run
               takes exactly the same steps with the same learning-rate schedule. What still
               differs between them is the kernels (non-deterministic reductions, atomics) and
               the evaluation.
  re-evaluation   each saved model evaluated again, twice, in one fresh process with the fixed
               evaluate_bpb (eager, no compile): what the evaluation alone adds.

The data loader's share is checked directly: two loaders made one after the other must give the
same first batches. The variance of the timed runs minus that of the fixed runs is what the step
count adds. Results go to --json after every run, so a run cut off by a time limit keeps the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch.bench import load_train  # noqa: E402
from autoresearch.execution.parse import parse_summary  # noqa: E402

LOADER_BATCHES = 20  # batches compared between two fresh data loaders


class FixedClock:
    """Stands in for train.py's `time` module: every reading advances by `tick` seconds, so each
    training step (two readings apart) lasts exactly `tick` and the step count is fixed."""

    def __init__(self, tick: float):
        self.tick, self.now = tick, time.time()

    def time(self) -> float:
        self.now += self.tick
        return self.now

    def __getattr__(self, name: str):  # sleep, perf_counter, ...: the real ones
        return getattr(time, name)


def child_train(train_file: str, budget: float, tick: float | None) -> None:
    train = load_train(Path(train_file))
    train.TIME_BUDGET = budget
    if tick:
        train.time = FixedClock(tick)
    train.main()


def child_reeval(run_dirs: list[str], repeats: int) -> None:
    """Print one JSON line per run dir: the val_bpb of its saved model, `repeats` times."""
    import torch

    from autoresearch.artifacts.sample import load_model

    for run_dir in run_dirs:
        model, tokenizer, _ = load_model(Path(run_dir), "cuda" if torch.cuda.is_available()
                                         else "cpu", ROOT)
        prepare = sys.modules["prepare"]
        batch = getattr(sys.modules[type(model).__module__], "FINAL_EVAL_BATCH_SIZE", 32)
        values = []
        for _ in range(repeats):
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                 enabled=torch.cuda.is_available()):
                values.append(prepare.evaluate_bpb(model, tokenizer, batch))
        print(json.dumps({"run_dir": run_dir, "values": values}), flush=True)


def loader_digest() -> str:
    """A hash of the first batches of a fresh training loader."""
    from prepare import MAX_SEQ_LEN, Tokenizer, make_dataloader

    loader = make_dataloader(Tokenizer.from_directory(), 4, MAX_SEQ_LEN, "train", device="cpu")
    digest = hashlib.sha256()
    for _ in range(LOADER_BATCHES):
        x, y, _ = next(loader)
        digest.update(x.numpy().tobytes())
        digest.update(y.numpy().tobytes())
    loader.close()
    return digest.hexdigest()


def run_child(args: list[str], log: Path) -> str:
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace")
        out.write(proc.stdout)
    if proc.returncode != 0:
        tail = proc.stdout.strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"error: a child run failed (exit {proc.returncode}): {tail[0]}; "
                         f"see {log}")
    return proc.stdout


def train_run(label: str, budget: float, tick: float | None, work: Path) -> dict:
    run_dir = work / label
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    shutil.copy(ROOT / "train.py", run_dir / "train.py")  # load_model imports the run's copy
    os.environ["AUTORESEARCH_CHECKPOINT_DIR"] = str(run_dir)
    started = time.time()
    args = ["--child-train", str(run_dir / "train.py"), str(budget)] + ([str(tick)] if tick else [])
    summary = parse_summary(run_child(args, run_dir / "run.log")) or {}
    return {"label": label, "fixed_steps": tick is not None, "run_dir": str(run_dir),
            "wall_seconds": round(time.time() - started, 1),
            "val_bpb": summary.get("val_bpb"), "num_steps": summary.get("num_steps"),
            "training_seconds": summary.get("training_seconds")}


def std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def summarize(result: dict) -> dict:
    timed = [r for r in result["runs"] if not r["fixed_steps"] and r["val_bpb"] is not None]
    fixed = [r for r in result["runs"] if r["fixed_steps"] and r["val_bpb"] is not None]
    repeats = [e["values"] for e in result["re_evaluations"]]
    eval_diffs = [v[i] - v[0] for v in repeats for i in range(1, len(v))]
    out = {
        "timed_std": std([r["val_bpb"] for r in timed]),
        "timed_steps": [r["num_steps"] for r in timed],
        "fixed_std": std([r["val_bpb"] for r in fixed]),
        "fixed_steps": [r["num_steps"] for r in fixed],
        "eval_repeat_max_abs_diff": max((abs(d) for d in eval_diffs), default=None),
        "loader_deterministic": result.get("loader_deterministic"),
    }
    if len(timed) >= 3 and len({r["num_steps"] for r in timed}) > 1:
        steps = [float(r["num_steps"]) for r in timed]
        slope = statistics.linear_regression(steps, [r["val_bpb"] for r in timed]).slope
        out["bpb_per_step"] = slope
    if out["timed_std"] and out["fixed_std"] is not None:
        total, kernels = out["timed_std"] ** 2, out["fixed_std"] ** 2
        out["share_kernels_and_eval"] = min(1.0, kernels / total)
        out["share_step_count"] = max(0.0, 1 - kernels / total)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-train":
        _, _, train_file, budget, *tick = sys.argv
        child_train(train_file, float(budget), float(tick[0]) if tick else None)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-reeval":
        child_reeval(sys.argv[3:], int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--budget", type=float, default=45.0, help="training seconds per run")
    parser.add_argument("--runs", type=int, default=4, help="timed runs (default 4)")
    parser.add_argument("--fixed-runs", type=int, default=0,
                        help="runs with a fixed step count, as many steps as the first timed run")
    parser.add_argument("--re-eval", type=int, default=2,
                        help="evaluations of each saved model in a fresh process (0: none)")
    parser.add_argument("--re-eval-models", type=int, default=2,
                        help="how many saved models to evaluate again (default 2)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "variance",
                        help="where run folders go (default runs/variance)")
    parser.add_argument("--json", type=Path, help="write every number here, after every run")
    opts = parser.parse_args()

    result: dict = {"budget": opts.budget, "runs": [], "re_evaluations": []}

    def save() -> None:
        result["summary"] = summarize(result)
        if opts.json:
            opts.json.write_text(json.dumps(result, indent=1))

    result["loader_deterministic"] = loader_digest() == loader_digest()
    for i in range(opts.runs):
        result["runs"].append(train_run(f"timed-{i}", opts.budget, None, opts.work))
        print(json.dumps(result["runs"][-1]), flush=True)
        save()
    first = result["runs"][0] if result["runs"] else None
    if opts.fixed_runs and first and first["num_steps"]:
        tick = first["training_seconds"] / first["num_steps"]
        for i in range(opts.fixed_runs):
            result["runs"].append(train_run(f"fixed-{i}", opts.budget, tick, opts.work))
            print(json.dumps(result["runs"][-1]), flush=True)
            save()
    if opts.re_eval and result["runs"]:
        dirs = [r["run_dir"] for r in result["runs"]][:opts.re_eval_models]
        out = run_child(["--child-reeval", str(opts.re_eval), *dirs], opts.work / "reeval.log")
        result["re_evaluations"] = [json.loads(line) for line in out.splitlines()
                                    if line.startswith("{")]
    save()
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()

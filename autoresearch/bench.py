"""Benchmark train.py on this machine: speed, overheads, memory and the metric, run by run.

    python -m autoresearch.bench --budget 60 --runs 2 --cold     # (scripts/bench.sh wraps this)

Each run is the real train.py in a fresh process with its TIME_BUDGET replaced, so what is timed
is exactly what the loop runs. `--cold` points the compile caches (TorchInductor, Triton,
FlashAttention-4) at an empty folder for the first run; later runs reuse it, which is the loop's
steady state. Before the runs, the input pipeline is timed alone on the CPU: it must outrun the
GPU by a margin.

Numbers come from train.py's own output: the per-step lines (`dt`, `tok/s`), the `timing:` line
(start-up, first step with compilation, evaluation) and the summary block.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from autoresearch.execution.local import bytecode_warning
from autoresearch.execution.parse import parse_summary, split_lines

ROOT = Path(__file__).resolve().parent.parent
WARMUP_STEPS = 5  # steps left out of the step-time statistics: compilation, allocator warm-up
# --cold: every compile cache that prepare.py points into the cache directory, by variable
COLD_CACHES = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton",
               "FLASH_ATTENTION_CUTE_DSL_CACHE_DIR": "flash_attention"}
_STEP = re.compile(r"step (\d+) .*?\| dt (\d+)ms \| tok/s ([\d,]+)")
_TIMING = re.compile(r"timing: start-up ([\d.]+)s \| first step ([\d.]+)s \| evaluation ([\d.]+)s")


@dataclass
class RunReport:
    label: str  # "cold" or "warm"
    train_file: str
    returncode: int
    wall_seconds: float  # the whole process, interpreter start to exit
    val_bpb: float | None = None
    training_seconds: float | None = None
    total_seconds: float | None = None
    overhead_seconds: float | None = None  # total_seconds - training_seconds
    startup_seconds: float | None = None
    first_step_seconds: float | None = None
    eval_seconds: float | None = None
    peak_vram_mb: float | None = None
    mfu_percent: float | None = None
    num_steps: int | None = None
    tokens_per_second: float | None = None  # median over steps after warm-up
    step_ms_median: float | None = None
    step_spread_percent: float | None = None  # (p95 - p5) / median of step times
    step_cv_percent: float | None = None  # standard deviation / mean of step times
    log: str = ""


def read_log(text: str, report: RunReport) -> RunReport:
    """Fill `report` from a train.py log: summary block, timing line, per-step statistics."""
    summary = parse_summary(text)
    if summary:
        report.val_bpb = summary["val_bpb"]
        report.training_seconds = summary["training_seconds"]
        report.total_seconds = summary["total_seconds"]
        report.overhead_seconds = round(summary["total_seconds"] - summary["training_seconds"], 1)
        report.peak_vram_mb = summary["peak_vram_mb"]
        report.mfu_percent = summary["mfu_percent"]
        report.num_steps = int(summary["num_steps"])
    steps: dict[int, tuple[float, float]] = {}  # a redrawn line repeats a step: the last one wins
    for line in split_lines(text):
        match = _STEP.search(line)
        if match:
            tokens_per_s = float(match.group(3).replace(",", ""))
            steps[int(match.group(1))] = (float(match.group(2)), tokens_per_s)
        timing = _TIMING.search(line)
        if timing:
            report.startup_seconds, report.first_step_seconds, report.eval_seconds = (
                float(g) for g in timing.groups())
    steady = [steps[k] for k in sorted(steps) if k > WARMUP_STEPS]
    if len(steady) >= 2:
        dts = [dt for dt, _ in steady]
        median = statistics.median(dts)
        report.step_ms_median = median
        report.tokens_per_second = statistics.median(tps for _, tps in steady)
        cuts = statistics.quantiles(dts, n=20, method="inclusive")  # p5, p10, ..., p95
        report.step_spread_percent = 100 * (cuts[-1] - cuts[0]) / median
        report.step_cv_percent = 100 * statistics.pstdev(dts) / statistics.fmean(dts)
    return report


def load_train(train_file: Path) -> ModuleType:
    """Import a training script as a module without running its main()."""
    spec = importlib.util.spec_from_file_location("train", train_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module  # as a plain `import train` would: the compiler looks it up
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the agent's (or your) edit broke it: say so in one line
        sys.exit(f"error: {train_file.name} does not import ({type(e).__name__}: {e}); "
                 f"fix it, or run `python {train_file.name}` to see the traceback")
    return module


def run_training(train_file: str, budget: float | None) -> None:
    """What each benchmark child process does: train.py's main(), its budget replaced
    (None: the profile's own)."""
    train = load_train(Path(train_file))
    if budget is not None:
        train.TIME_BUDGET = budget
    train.main()


def train_command(train_file: Path, budget: float | None) -> list[str]:
    """A fresh interpreter running `run_training` (from the repository root)."""
    code = ("from autoresearch.bench import run_training; "
            f"run_training({str(train_file)!r}, {budget!r})")
    return [sys.executable, "-c", code]


def run_once(train_file: Path, budget: float | None, label: str, env: dict[str, str],
             log_path: Path, echo: bool) -> RunReport:
    started = time.time()
    lines: list[str] = []
    with log_path.open("w", encoding="utf-8") as log, subprocess.Popen(
            train_command(train_file, budget), cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if echo:
                print(f"  [{label}] {line}", end="", flush=True)
    report = RunReport(label, str(train_file), proc.returncode, round(time.time() - started, 1),
                       log=str(log_path))
    return read_log("".join(lines), report)


def dataloader_tokens_per_second(batch_size: int, seconds: float) -> float:
    """Packed (batch_size, MAX_SEQ_LEN) batches per second from the real train loader, on the
    CPU alone (no model): the ceiling the input pipeline puts on training throughput."""
    from prepare import MAX_SEQ_LEN, Tokenizer, make_dataloader

    loader = make_dataloader(Tokenizer.from_directory(), batch_size, MAX_SEQ_LEN, "train",
                             device="cpu")
    for _ in range(2):  # the first batches wait for the document buffer to fill
        next(loader)
    tokens, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x, _, _ = next(loader)
        tokens += x.numel()
    rate = tokens / (time.perf_counter() - t0)
    loader.close()
    return rate


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def machine() -> str:
    """What the numbers were measured on: GPU (or CPU) and the PyTorch build."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return f"{device}, PyTorch {torch.__version__}"


def print_table(dataloader_rate: float | None, batch_size: int, reports: list[RunReport]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="train.py benchmark", title_justify="left")
    for name in ("run", "tok/s", "MFU %", "step ms", "spread %", "cv %", "start-up s",
                 "first step s", "eval s", "overhead s", "wall s", "peak MB", "val_bpb"):
        table.add_column(name, justify="left" if name == "run" else "right")
    for r in reports:
        table.add_row(r.label if r.returncode == 0 else f"{r.label} (exit {r.returncode})",
                      fmt(r.tokens_per_second, ",.0f"), fmt(r.mfu_percent, ".2f"),
                      fmt(r.step_ms_median, ".0f"), fmt(r.step_spread_percent, ".1f"),
                      fmt(r.step_cv_percent, ".1f"),
                      fmt(r.startup_seconds, ".1f"), fmt(r.first_step_seconds, ".1f"),
                      fmt(r.eval_seconds, ".1f"), fmt(r.overhead_seconds, ".1f"),
                      fmt(r.wall_seconds, ".1f"), fmt(r.peak_vram_mb, ",.0f"),
                      fmt(r.val_bpb, ".6f"))
    console = Console(highlight=False)
    if not console.is_terminal:  # logs and pipes: never squeeze the columns
        console.width = max(console.width, 150)
    if dataloader_rate is not None:
        console.print(f"dataloader alone (CPU, batch {batch_size}): {dataloader_rate:,.0f} tok/s")
    console.print(table)
    console.print(f"machine: {machine()}")
    if note := bytecode_warning():
        console.print(note)
    console.print(f"step times after the first {WARMUP_STEPS} steps: spread = (p95 - p5) / median, "
                  "cv = standard deviation / mean; overhead = total_seconds - training_seconds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench.sh", description=__doc__.split("\n\n")[0],
        epilog="Example: scripts/bench.sh --budget 60 --runs 2 --cold --json bench.json")
    parser.add_argument("--budget", type=float, default=None,
                        help="training seconds per run (default: the profile's TIME_BUDGET)")
    parser.add_argument("--runs", type=int, default=1, help="runs in a row (default 1)")
    parser.add_argument("--cold", action="store_true",
                        help="start from empty compile caches (a temporary folder); later runs "
                             "reuse it and show the warm cost")
    parser.add_argument("--train", type=Path, default=ROOT / "train.py",
                        help="the training script to run (default: train.py)")
    parser.add_argument("--dataloader-seconds", type=float, default=10.0,
                        help="how long to time the dataloader alone; 0 skips it (default 10)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "runs" / "bench",
                        help="where each run's full log goes (default runs/bench)")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    parser.add_argument("--quiet", action="store_true", help="do not echo train.py's output")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    train_file = args.train.resolve()
    if not train_file.is_file():
        parser.error(f"no training script at {args.train}")

    batch_size = load_train(train_file).DEVICE_BATCH_SIZE  # sizes the dataloader test
    rate = None
    if args.dataloader_seconds > 0:
        print(f"timing the dataloader alone for {args.dataloader_seconds:g}s ...", flush=True)
        rate = dataloader_tokens_per_second(batch_size, args.dataloader_seconds)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cache = None
    if args.cold:
        cache = tempfile.TemporaryDirectory(prefix="bench-compile-cache-")
        env.update({var: str(Path(cache.name) / sub) for var, sub in COLD_CACHES.items()})
    log_dir = args.log_dir.resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    reports = []
    try:
        for i in range(args.runs):
            label = "cold" if args.cold and i == 0 else "warm"
            label = f"{i + 1}:{label}"
            print(f"run {label}: {train_file.name}, budget "
                  f"{'default' if args.budget is None else f'{args.budget:g}s'}", flush=True)
            log_path = log_dir / f"{stamp}-run{i + 1}.log"
            reports.append(run_once(train_file, args.budget, label, env, log_path,
                                    echo=not args.quiet))
    finally:
        if cache is not None:
            cache.cleanup()
    print_table(rate, batch_size, reports)
    if args.json:
        args.json.write_text(json.dumps({
            "dataloader_tokens_per_second": rate, "dataloader_batch_size": batch_size,
            "machine": machine(), "budget": args.budget, "cold": args.cold,
            "runs": [asdict(r) for r in reports],
        }, indent=1))
    return 0 if all(r.returncode == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())

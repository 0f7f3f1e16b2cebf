"""The benchmark entry point: its reading of train.py logs, and a real run on the cpu profile."""

import json
import os
import re
import statistics
import subprocess
import sys

import pytest
from conftest import REPO, SESSION_CACHE

from autoresearch.bench import COLD_CACHES, WARMUP_STEPS, RunReport, read_log


def fake_log(step_ms: list[int], redraw: bool = False) -> str:
    sep = "\r" if redraw else "\n"
    steps = sep.join(
        f"step {i:05d} (1.0%) | loss 5.000000 | lrm 1.00 | dt {ms}ms | tok/s {524288_000 // ms:,} "
        f"| mfu 30.0% | epoch 1 | remaining 9s" for i, ms in enumerate(step_ms, start=1))
    return (f"profile: h100 | device: cuda\n{steps}\n"
            "timing: start-up 2.5s | first step 30.1s | evaluation 6.0s\nprofile: h100\n---\n"
            "val_bpb:          1.234567\ntraining_seconds: 300.2\ntotal_seconds:    340.7\n"
            "peak_vram_mb:     49148.0\nmfu_percent:      36.10\ntotal_tokens_M:   450.9\n"
            "num_steps:        860\nnum_params_M:     50.3\ndepth:            8\n")


@pytest.mark.parametrize("redraw", [False, True])
def test_read_log_takes_steady_state_step_statistics(redraw):
    # steps 1-5 (compilation, warm-up) are left out; then 10 steps: 9 at 300 ms, one at 330 ms
    report = read_log(fake_log([30000, 400, 350, 320, 310] + [300] * 9 + [330], redraw),
                      RunReport("1:cold", "train.py", 0, 400.0))
    assert report.step_ms_median == 300
    assert report.tokens_per_second == 524288_000 // 300
    # p95 - p5 of nine 300s and one 330 (interpolated) over the median, in percent
    assert report.step_spread_percent == pytest.approx(100 * (300 + 0.55 * 30 - 300) / 300)
    assert report.step_cv_percent == pytest.approx(100 * 9.0 / 303.0)
    timing = (report.startup_seconds, report.first_step_seconds, report.eval_seconds)
    assert timing == (2.5, 30.1, 6.0)
    assert report.val_bpb == 1.234567 and report.num_steps == 860
    assert report.overhead_seconds == 40.5 and report.peak_vram_mb == 49148.0


def test_read_log_of_a_crash_leaves_the_numbers_empty():
    report = read_log("step 00001 (0.0%) | loss 9.0 | lrm 1.00 | dt 900ms | tok/s 1,000 | "
                      "mfu 1.0% | epoch 1 | remaining 9s\nTraceback ...\n",
                      RunReport("1:warm", "train.py", 1, 5.0))
    assert report.val_bpb is None and report.step_ms_median is None and report.eval_seconds is None


@pytest.mark.slow
def test_bench_runs_the_real_train_py_and_reports_every_number(prepared_cache, tmp_path):
    env = {**os.environ, "AUTORESEARCH_PROFILE": "cpu", "AUTORESEARCH_CACHE": str(SESSION_CACHE),
           "PYTHONDONTWRITEBYTECODE": "1"}
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "autoresearch.bench", "--budget", "8", "--cold", "--quiet",
         "--dataloader-seconds", "1", "--json", str(out), "--log-dir", str(tmp_path / "logs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "train.py benchmark" in result.stdout and "machine: CPU, PyTorch" in result.stdout
    assert "note: PYTHONDONTWRITEBYTECODE is set" in result.stdout  # its start-up is inflated
    report = json.loads(out.read_text())
    assert report["dataloader_tokens_per_second"] > 0 and report["dataloader_batch_size"] == 8
    (run,) = report["runs"]
    assert run["label"] == "1:cold" and run["returncode"] == 0
    log = open(run["log"]).read()
    assert log.rstrip().endswith("depth:            2")  # the whole output, nothing after it
    # Every number is the one train.py printed; how many steps fit in 8 s is the machine's
    # business, so no bound depends on it.
    summary = dict(re.findall(r"^(\w+):\s+(\S+)$", log.split("\n---\n")[-1], re.M))
    assert run["val_bpb"] == float(summary["val_bpb"]) and 0.5 < run["val_bpb"] < 5.0
    assert run["num_steps"] == int(summary["num_steps"])
    assert run["num_steps"] >= 2  # train.py stops only after a counted step past the first
    assert run["training_seconds"] == float(summary["training_seconds"]) >= 8  # the budget, spent
    assert run["total_seconds"] == float(summary["total_seconds"])
    assert run["overhead_seconds"] == round(run["total_seconds"] - run["training_seconds"], 1)
    timing = re.search(r"timing: start-up (\S+)s \| first step (\S+)s \| evaluation (\S+)s", log)
    assert [run["startup_seconds"], run["first_step_seconds"], run["eval_seconds"]] == [
        float(t) for t in timing.groups()]
    # step statistics: over the steps after the warm-up, when there are at least two of them
    steps = {int(n): (int(ms), int(tps.replace(",", ""))) for n, ms, tps in re.findall(
        r"^step (\d+) .*\| dt (\d+)ms \| tok/s ([\d,]+) ", log, re.M)}
    assert max(steps) == run["num_steps"]
    steady = [steps[n] for n in sorted(steps) if n > WARMUP_STEPS]
    if len(steady) >= 2:
        assert run["step_ms_median"] == statistics.median(ms for ms, _ in steady)
        assert run["tokens_per_second"] == statistics.median(tps for _, tps in steady)
    else:
        assert run["step_ms_median"] is None and run["tokens_per_second"] is None
    assert run["wall_seconds"] > run["total_seconds"]  # the interpreter's start-up is outside


def test_a_broken_training_script_is_one_line_error(tmp_path):
    broken = tmp_path / "train.py"
    broken.write_text("x = (\n")
    result = subprocess.run([sys.executable, "-m", "autoresearch.bench", "--train", str(broken)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: train.py does not import (SyntaxError: '(' was never closed (train.py, line 1)); "
        "fix it, or run `python train.py` to see the traceback"]


@pytest.mark.slow
def test_cold_runs_empty_every_compile_cache_that_prepare_sets():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_CACHE_DIR")}
    result = subprocess.run(
        [sys.executable, "-c", "import os, prepare; "
         "print(' '.join(v for v in os.environ if v.endswith('_CACHE_DIR')))"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    set_by_prepare = set(result.stdout.split())
    assert "TORCHINDUCTOR_CACHE_DIR" in set_by_prepare, result.stderr[-2000:]
    assert set_by_prepare <= set(COLD_CACHES)

"""scripts/*.sh: documented, strict bash wrappers that call the Python entry points via uv."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autoresearch.artifacts.sample import sample_run
from autoresearch.ledger.results import append_result
from autoresearch.model import Row
from constants import PROFILES

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["check-hardware.sh", "setup.sh", "run-experiment.sh", "run-loop.sh", "show-results.sh",
           "bench.sh"]


def script(name: str, *args: str, env: dict | None = None, cwd: Path | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_and_strict_mode(name):
    path = ROOT / "scripts" / name
    assert os.access(path, os.X_OK), f"{name} is not executable"
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert "uv run" in text  # the Python entry points, never a logic of its own
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    result = script(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: scripts/{name}")
    assert "Examples:" in result.stdout


@pytest.mark.parametrize("name", ["check-hardware.sh", "run-experiment.sh", "show-results.sh"])
def test_unknown_option_is_refused(name):
    result = script(name, "--bogus")
    assert result.returncode == 2
    assert "unknown option --bogus" in result.stderr and "Usage:" in result.stderr


@pytest.mark.slow
def test_check_hardware_reports_json(tmp_path):
    env = {"AUTORESEARCH_CACHE": str(tmp_path)}
    result = script("check-hardware.sh", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    has_gpu = torch.cuda.is_available()
    assert (report["gpu"] is not None) == has_gpu
    assert report["gpu_count"] == torch.cuda.device_count()
    assert report["suggested_profile"] in PROFILES
    if not has_gpu and not report["mps"]:
        assert report["suggested_profile"] == "cpu"
    assert report["uv"].startswith("uv ") and report["memory_gb"] > 0
    assert report["cache_dir"] == str(tmp_path)
    assert report["data"] == {"manifest": False, "shards": 0}
    assert report["tokenizer"] is False and report["ready"] is False
    profile = script("check-hardware.sh", "--profile", env=env)
    assert profile.stdout.strip() == report["suggested_profile"]


@pytest.mark.slow
def test_run_experiment_reports_a_failed_run(tmp_path):
    """A run that fails (here: an unknown profile, refused by constants.py at once) comes back
    with train.py's exit status and the end of its log. A successful cpu-profile run needs the
    lead's prepared-cache fixture."""
    log = tmp_path / "out.log"
    result = script("run-experiment.sh", "--profile", "bogus", "--log", "out.log", "--quiet",
                    cwd=tmp_path)
    assert result.returncode == 1
    assert "training: uv run train.py (profile bogus)" in result.stdout
    assert f"error: train.py failed (exit 1); the end of {log}" in result.stderr
    assert "unknown AUTORESEARCH_PROFILE='bogus'" in log.read_text()
    assert "unknown AUTORESEARCH_PROFILE='bogus'" in result.stderr


def test_show_results(tmp_path):
    results = tmp_path / "results.tsv"
    for n, (status, bpb) in enumerate([("keep", 1.0), ("discard", 1.01), ("keep", 0.98)], 1):
        append_result(results, Row(f"{n:07x}", bpb, 40.0, status, f"change {n}", experiment=n,
                                   tag="t"))
    result = script("show-results.sh", "--top", "2", "--results", "results.tsv",
                    "--out", "night.png", cwd=tmp_path, env={"COLUMNS": "150"})
    assert result.returncode == 0, result.stderr
    assert "3  (2 kept, 1 discarded, 0 crashed)" in result.stdout  # the summary
    assert "tag t (2 rows)" in result.stdout  # the top runs, of the tag the summary shows
    assert (tmp_path / "night.png").read_bytes()[:4] == b"\x89PNG"


def test_run_loop_passes_options_through(tmp_path):
    result = script("run-loop.sh", "--profile", "cpu", "--tag", "x", "--agent", "nonesuch",
                    "--repo", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "nonesuch" in result.stderr


@pytest.mark.slow
def test_run_experiment_on_cpu_then_sample_its_checkpoint(prepared_cache, tmp_path):
    """The real train.py on the cpu profile through the wrapper (one training run serves both
    checks, to keep the suite fast): metrics printed from the summary block, and the checkpoint
    it saved loads into that run's train.py copy and generates text."""
    run_dir = tmp_path / "runs" / "0001-abcdef0"
    result = script("run-experiment.sh", "--profile", "cpu", "--quiet", "--log", "run.log",
                    "--checkpoint-dir", str(run_dir), cwd=tmp_path, timeout=300,
                    env={"AUTORESEARCH_CACHE": str(prepared_cache)})
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = dict(line.split(":", 1) for line in result.stdout.splitlines()[2:])
    assert list(metrics) == ["val_bpb", "training_seconds", "total_seconds", "peak_vram_mb",
                             "mfu_percent", "total_tokens_M", "num_steps", "num_params_M", "depth"]
    assert 0 < float(metrics["val_bpb"]) < 20 and int(metrics["num_steps"]) >= 1
    assert (tmp_path / "run.log").read_text().rstrip().endswith(result.stdout.splitlines()[-1])

    (run_dir / "train.py").write_text((ROOT / "train.py").read_text())
    text = sample_run(run_dir, "The", max_tokens=6, temperature=0, device="cpu", repo=ROOT)
    assert text.startswith("The") and len(text) > len("The")


# What a train.py prints, from the harness beside it: the budget is constants.py's (the script
# sets it) and tok/s is total_tokens_M / training_seconds; the value of SPEED tells files apart.
SPEED_TRAIN = """import os
from constants import TIME_BUDGET

assert os.path.isfile("harness.py")  # today's train.py imports it: a copy must lie beside it

SPEED = {speed}
print("---")
for key, value in [("val_bpb", 1.5), ("training_seconds", TIME_BUDGET), ("total_seconds", 60),
                   ("peak_vram_mb", 0), ("mfu_percent", SPEED / 10), ("total_tokens_M",
                   SPEED * TIME_BUDGET), ("num_steps", 9), ("num_params_M", 1), ("depth", 2)]:
    print(f"{{key + ':':<18}}{{value}}")
"""


def test_bench_train_speed_compares_train_py_files_in_turn(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "train.py").write_text(SPEED_TRAIN.format(speed=2.0))
    (tmp_path / "new.py").write_text(SPEED_TRAIN.format(speed=3.0))
    (tmp_path / "broken.py").write_text("raise SystemExit('error: no GPU here')\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench-train-speed.py"),
                           "old/train.py", "new.py", "broken.py", "--runs", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    old = "val_bpb 1.500000 | mfu_percent 0.20 | tok/s 2,000,000"
    new = "val_bpb 1.500000 | mfu_percent 0.30 | tok/s 3,000,000"
    failed = "failed (exit 1: error: no GPU here)"
    assert lines == [f"A old/train.py run 1: {old}", f"B new.py run 1: {new}",
                     f"error: C broken.py run 1 {failed}", f"A old/train.py run 2: {old}",
                     f"B new.py run 2: {new}", f"error: C broken.py run 2 {failed}",
                     f"A old/train.py mean of 2: {old}", f"B new.py mean of 2: {new}"]
    assert (tmp_path / "runs" / "train-speed" / "B-2.log").read_text().startswith("---")
    # the 45 s budget of the lead's device call: training_seconds is the budget here
    assert "training_seconds: 45" in (tmp_path / "runs" / "train-speed" / "A-1.log").read_text()

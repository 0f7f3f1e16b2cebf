"""The synthetic landscape: a train.py to a search, a known function to a test."""

import os
import subprocess
import sys
from pathlib import Path

import landscape_train as landscape

from autoresearch.execution.parse import parse_profile, parse_summary
from autoresearch.memory.literals import find_constants

LANDSCAPE = Path(landscape.__file__)
TRAIN_PY = (Path(__file__).parent.parent / "train.py").read_text()
START = {name: c.value for name, c in find_constants(LANDSCAPE.read_text()).items()}


def run(tmp_path: Path, **env) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LANDSCAPE_")}
    done = subprocess.run([sys.executable, str(LANDSCAPE)], cwd=tmp_path, capture_output=True,
                          text=True, env={**base, **env}, check=True)
    return done.stdout


def test_its_knobs_are_the_real_train_py_s():
    real = find_constants(TRAIN_PY)
    assert START.keys() == landscape.OPTIMUM.keys()  # its own numbers are no knobs
    for name, c in find_constants(LANDSCAPE.read_text()).items():
        assert name in real and type(c.value) is type(real[name].value), name
        assert c.text == real[name].text  # the real starting values, spelled the same


def test_the_optimum_is_the_minimum():
    assert landscape.gap(landscape.OPTIMUM) == 0.0
    assert 0.04 < landscape.gap(START) < 0.05
    moves = {"MATRIX_LR": 0.06, "WEIGHT_DECAY": 0.12, "EMBEDDING_LR": 1.0, "DEPTH": 11,
             "TOTAL_BATCH_SIZE": 2**19, "ADAM_BETAS": (0.9, 0.95), "WARMDOWN_RATIO": 0.6,
             "WINDOW_PATTERN": "SSSL", "SOFTCAP": 20.0, "ASPECT_RATIO": 80, "WARMUP_RATIO": 0.1}
    for name, value in moves.items():
        assert landscape.gap({**landscape.OPTIMUM, name: value}) > 0, name
    for name, value in {"SCALAR_LR": 2.0, "DEVICE_BATCH_SIZE": 32, "SEED": 1}.items():
        assert landscape.gap({**landscape.OPTIMUM, name: value}) == 0, name
    # interactions: with twice the batch the best MATRIX_LR is sqrt(2) times higher
    double = {**landscape.OPTIMUM, "TOTAL_BATCH_SIZE": 2**19, "WEIGHT_DECAY": 0.1 / 2**0.5}
    assert landscape.gap({**double, "MATRIX_LR": 0.05 * 2**0.5}) < landscape.gap(double)


def test_prints_what_train_py_prints(tmp_path):
    out = run(tmp_path, AUTORESEARCH_PROFILE="h100")
    summary = parse_summary(out)
    assert summary is not None and parse_profile(out) == "h100"
    assert summary["val_bpb"] == round(landscape.landscape_value(START), 6)
    assert summary["num_steps"] == landscape.BASE_STEPS and summary["depth"] == 8


def test_noise_per_run_and_drift(tmp_path):
    counter = tmp_path / "runs"
    env = {"LANDSCAPE_NOISE": "0.001", "LANDSCAPE_SEED": "5",
           "LANDSCAPE_COUNTER_FILE": str(counter)}
    values = [parse_summary(run(tmp_path, **env))["val_bpb"] for _ in range(3)]
    assert values == [round(landscape.observed(START, n, 0.001, 5), 6) for n in range(3)]
    assert len(set(values)) == 3
    # a quarter period in, the machine is 5% faster: more steps, a lower val_bpb
    fast = parse_summary(run(tmp_path, LANDSCAPE_DRIFT="0.05", LANDSCAPE_DRIFT_PERIOD="40",
                             LANDSCAPE_RUN="10"))
    assert fast["num_steps"] == 1050
    assert fast["val_bpb"] == round(landscape.landscape_value(START) * 1.05 ** -0.1, 6)

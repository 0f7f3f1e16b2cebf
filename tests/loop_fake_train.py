"""A fake train.py for the loop tests: prints what the real one prints, in a blink.

Copied into each test repo as train.py. Its constants decide the outcome, so an agent's edit
changes the result: VAL_BPB is the val_bpb it reports, MODE makes it crash, hang, report NaN,
leave an orphan... Env vars tune a run without touching the code:
  FAKE_TRAIN_SECONDS  how long "training" takes (default 0)
  FAKE_HOLD           a file naming a run (its line in FAKE_PID_FILE): that run waits before
                      its first line, as the real one imports and compiles, until the file is gone
  FAKE_OFFSETS_FILE   numbers, one per line: each run adds (and consumes) the first to VAL_BPB
  FAKE_PID_FILE       every process of the run appends its pid here
  FAKE_COUNTER        a file counting the runs of a test (shared by parallel runs, locked):
                      run i's machine speed is 1 + FAKE_DRIFT * sin(2 pi i / FAKE_DRIFT_PERIOD)
                      (default period 40), and a fixed-time budget turns speed into val_bpb:
                      + SPEED_EFFECT * (1 - speed); plus Gaussian noise of sd FAKE_NOISE, seeded
                      by FAKE_SEED and i, so a test is deterministic
  FAKE_DEVICE_FILE    each run appends its CUDA_VISIBLE_DEVICES here
  FAKE_GPU_OFFSET     "<gpu>:<offset>": runs on that CUDA_VISIBLE_DEVICES add the offset (a GPU
                      model that gives other numbers)
"""

import fcntl
import math
import os
import random
import subprocess
import sys
import time

VAL_BPB = 1.0  # what this "training" reports
MODE = "ok"  # ok crash import oom nan hang orphan stray nanvalue tamper poison valcache
MATRIX_LR = 0.04  # does nothing: a change of it is a no-op
BONUS = 0.0  # added to VAL_BPB: a second knob (lines away), so that two changes merge cleanly

SLEEPER = """
import os, time
path = os.environ.get("FAKE_PID_FILE")
if path:
    open(path, "a").write(f"{os.getpid()}\\n")
time.sleep(600)
"""
# A child that ignores SIGTERM and starts a grandchild: the loop must still kill both.
STUBBORN = """
import signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", sys.argv[1]])
""" + SLEEPER


def offset():
    path = os.environ.get("FAKE_OFFSETS_FILE")
    if not path or not os.path.exists(path):
        return 0.0
    lines = open(path).read().split()
    if not lines:
        return 0.0
    open(path, "w").write("\n".join(lines[1:]))
    return float(lines[0])


SPEED_EFFECT = 0.05  # bpb per 100 % of speed: fewer steps in the time budget, a worse model


def drift_and_noise():
    path = os.environ.get("FAKE_COUNTER")
    if not path:
        return 0.0
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        i = int(f.read() or 0)
        f.seek(0)
        f.truncate()
        f.write(str(i + 1))
    period = float(os.environ.get("FAKE_DRIFT_PERIOD", "40"))
    speed = 1 + float(os.environ.get("FAKE_DRIFT", "0")) * math.sin(2 * math.pi * i / period)
    rng = random.Random(f"{os.environ.get('FAKE_SEED', '0')}:{i}")
    return SPEED_EFFECT * (1 - speed) + rng.gauss(0, float(os.environ.get("FAKE_NOISE", "0")))


def hold_start():
    hold, pids = os.environ.get("FAKE_HOLD"), os.environ.get("FAKE_PID_FILE")
    if not hold or not pids:
        return
    run = str(len(open(pids).read().split()))
    while os.path.exists(hold) and open(hold).read().strip() == run:
        time.sleep(0.05)


def main():
    path = os.environ.get("FAKE_PID_FILE")
    if path:
        open(path, "a").write(f"{os.getpid()}\n")
    devices = os.environ.get("FAKE_DEVICE_FILE")
    if devices:
        open(devices, "a").write(f"{os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\n")
    hold_start()
    seconds = float(os.environ.get("FAKE_TRAIN_SECONDS", "0"))
    value = VAL_BPB + BONUS + offset() + drift_and_noise()
    gpu, _, shift = os.environ.get("FAKE_GPU_OFFSET", "").partition(":")
    if gpu and os.environ.get("CUDA_VISIBLE_DEVICES") == gpu:
        value += float(shift)
    print("profile: cpu | device: cpu | params: 0.1M", flush=True)
    for step in range(3):
        print(f"step {step:05d} ({100 * (step + 1) / 3:.1f}%) | loss 4.{step}00000 | lrm 1.00 | "
              f"dt 10ms | tok/s 1,000 | mfu 1.0% | epoch 1 | remaining {3 - step}s", flush=True)
        time.sleep(seconds / 3)
    if MODE == "crash":
        raise RuntimeError("boom: a bug in the edit")
    if MODE == "import":
        import not_a_module_anywhere  # noqa: F401
    if MODE == "oom":
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
        sys.exit(1)
    if MODE == "nan":
        print("error: loss is not finite", flush=True)
        sys.exit(3)
    if MODE == "hang":
        subprocess.Popen([sys.executable, "-c", STUBBORN, SLEEPER])
        time.sleep(600)
    if MODE == "orphan":
        subprocess.Popen([sys.executable, "-c", SLEEPER])  # still running after a normal exit
    if MODE == "stray":
        print("val_bpb: 0.100000  (a debug print, not the summary)")
        return
    if MODE == "tamper":
        for name in ("prepare.py", "harness.py"):  # the harness files in its run folder
            with open(name, "a") as f:
                f.write("# changed by a run\n")
    if MODE == "poison":  # writes into the prepared data, where the metric reads
        with open(os.path.join(os.environ["AUTORESEARCH_CACHE"], "data", "poison.txt"), "w") as f:
            f.write("a better validation set\n")
    if MODE in ("poison", "valcache"):  # what prepare.py's first evaluation caches
        cache = os.path.join(os.environ["AUTORESEARCH_CACHE"], "tokenizer", "val_tokens.npz")
        with open(cache, "a") as f:
            f.write("tokens\n")
    if MODE == "nanvalue":
        value = float("nan")
    ckpt = os.environ.get("AUTORESEARCH_CHECKPOINT_DIR")
    if ckpt:
        with open(os.path.join(ckpt, "model.pt"), "wb") as f:
            f.write(b"weights")
    print("profile: cpu")
    print("---")
    print(f"val_bpb:          {value:.6f}")
    print("training_seconds: 1.0")
    print("total_seconds:    1.5")
    print("peak_vram_mb:     2048.0")
    print("mfu_percent:      1.00")
    print("total_tokens_M:   0.1")
    print("num_steps:        3")
    print("num_params_M:     0.1")
    print("depth:            2")


if __name__ == "__main__":
    main()

"""A synthetic research landscape: a fake train.py whose val_bpb is a known function of its knobs.

To a search it looks like the real train.py: the same top-level constants, spelled and commented
the same way. Run, it prints what the real one prints (a `profile:` line, progress, `---` and the
nine summary keys) in a blink. Imported, it gives the landscape itself, so a test or a benchmark
can say how far a search still is from the best: landscape_value(constants), OPTIMUM, gap().

The landscape, BASE at OPTIMUM and a smooth bowl around it (ln = natural log):

    lr     = ln(MATRIX_LR / 0.05) - 0.5 ln(TOTAL_BATCH_SIZE / 2**18)   best LR ~ sqrt(batch)
    decay  = ln(MATRIX_LR * WEIGHT_DECAY / 0.005)   what shrinks the weights is lr x decay
    sched  = 0.1 (w^2 + w f + f^2),  w = WARMDOWN_RATIO - 0.7,  f = FINAL_LR_FRAC - 0.1
    val_bpb = BASE + 0.02 lr^2 + 0.02 decay^2 + sched + 0.02 ln(EMBEDDING_LR / 0.9)^2
              + 0.02 ln(UNEMBEDDING_LR / 0.004)^2 + 0.01 (log2 TOTAL_BATCH_SIZE - 18)^2
              + 2 (beta1 - 0.85)^2 + 0.005 ln((1 - beta2) / 0.05)^2 + 0.05 WARMUP_RATIO^2
              + 0.002 (DEPTH - 10)^2 + 1e-5 (ASPECT_RATIO - 64)^2 + 0.002 ln(SOFTCAP / 15)^2
              + 0.1 (share of L in WINDOW_PATTERN - 1/3)^2

Three pairs interact (MATRIX_LR with the batch and with WEIGHT_DECAY, the two schedule ends);
SCALAR_LR, DEVICE_BATCH_SIZE, HEAD_DIM and SEED do not matter at all. The starting values below
are the real train.py's, about 0.045 above the optimum.

What a run reports adds noise and drift to that value. Env vars (all optional):
  LANDSCAPE_NOISE          sd of the Gaussian noise added to val_bpb (default 0: exact values)
  LANDSCAPE_SEED           seeds the noise, with the run number (default 0)
  LANDSCAPE_RUN            this run's number (default: from LANDSCAPE_COUNTER_FILE, else 0)
  LANDSCAPE_COUNTER_FILE   a file every run appends one byte to, under a lock: the run number is
                           its size before, so runs count 0, 1, 2 ..., parallel ones too
  LANDSCAPE_DRIFT          the machine's speed drifts by +-this fraction (0.05: +-5%) over the
                           runs, as a sine of the run number; a slower run trains fewer steps and
                           reports val_bpb * speed**-STEPS_EXPONENT (default 0: no drift)
  LANDSCAPE_DRIFT_PERIOD   runs in one full cycle of the drift (default 40)
  AUTORESEARCH_PROFILE     the profile it says it ran (default cpu)
"""

import math
import os
import random

# Model architecture
ASPECT_RATIO = 64  # model_dim = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 128
WINDOW_PATTERN = "SSSL"  # per layer, repeating: S = half-context sliding window, L = full context
SOFTCAP = 15.0  # logits are squashed to (-SOFTCAP, SOFTCAP) with tanh

# Optimization
TOTAL_BATCH_SIZE = 2**19  # tokens per optimizer step
EMBEDDING_LR = 0.6  # AdamW, token and value embeddings
UNEMBEDDING_LR = 0.004  # AdamW, lm_head
MATRIX_LR = 0.04  # Muon, every matrix inside the transformer blocks
SCALAR_LR = 0.5  # AdamW, per-layer residual scalars
WEIGHT_DECAY = 0.2  # Muon matrices only, decays with the learning rate
ADAM_BETAS = (0.8, 0.95)
WARMUP_RATIO = 0.0  # fraction of the time budget spent warming the learning rate up
WARMDOWN_RATIO = 0.5  # fraction of the time budget spent decaying it at the end
FINAL_LR_FRAC = 0.0  # learning rate at the end, as a fraction of the peak

# Model size and batch
DEPTH = 8
DEVICE_BATCH_SIZE = 128  # sequences per forward/backward; gradients accumulate up to the total
SEED = 42

# The landscape's own numbers are annotated, so find_constants (plain `NAME = literal` lines
# only) does not offer them to a search as knobs.
BASE: float = 0.95  # val_bpb at the optimum, without noise or drift
OPTIMUM: dict = {
    "ASPECT_RATIO": 64, "HEAD_DIM": 128, "WINDOW_PATTERN": "SSL", "SOFTCAP": 15.0,
    "TOTAL_BATCH_SIZE": 2**18, "EMBEDDING_LR": 0.9, "UNEMBEDDING_LR": 0.004, "MATRIX_LR": 0.05,
    "SCALAR_LR": 0.5, "WEIGHT_DECAY": 0.1, "ADAM_BETAS": (0.85, 0.95), "WARMUP_RATIO": 0.0,
    "WARMDOWN_RATIO": 0.7, "FINAL_LR_FRAC": 0.1, "DEPTH": 10, "DEVICE_BATCH_SIZE": 128, "SEED": 42,
}
STEPS_EXPONENT: float = 0.1  # val_bpb ~ steps**-0.1 near the end of a fixed budget
BASE_STEPS: int = 1000  # optimizer steps at 2**19 tokens each, at nominal speed


def landscape_value(c: dict) -> float:
    """The exact val_bpb of a program with these constants (no noise, no drift)."""
    ln = math.log
    lr = ln(c["MATRIX_LR"] / 0.05) - 0.5 * ln(c["TOTAL_BATCH_SIZE"] / 2**18)
    decay = ln(c["MATRIX_LR"] * c["WEIGHT_DECAY"] / 0.005)
    w, f = c["WARMDOWN_RATIO"] - 0.7, c["FINAL_LR_FRAC"] - 0.1
    beta1, beta2 = c["ADAM_BETAS"]
    pattern = c["WINDOW_PATTERN"]
    return (BASE + 0.02 * lr**2 + 0.02 * decay**2 + 0.1 * (w * w + w * f + f * f)
            + 0.02 * ln(c["EMBEDDING_LR"] / 0.9) ** 2 + 0.02 * ln(c["UNEMBEDDING_LR"] / 0.004) ** 2
            + 0.01 * (math.log2(c["TOTAL_BATCH_SIZE"]) - 18) ** 2
            + 2 * (beta1 - 0.85) ** 2 + 0.005 * ln((1 - beta2) / 0.05) ** 2
            + 0.05 * c["WARMUP_RATIO"] ** 2 + 0.002 * (c["DEPTH"] - 10) ** 2
            + 1e-5 * (c["ASPECT_RATIO"] - 64) ** 2 + 0.002 * ln(c["SOFTCAP"] / 15) ** 2
            + 0.1 * (pattern.count("L") / len(pattern) - 1 / 3) ** 2)


def gap(c: dict) -> float:
    """How far above the optimum these constants are, in val_bpb."""
    return landscape_value(c) - BASE


def speed(run: int, drift: float, period: float) -> float:
    """The machine's relative speed during run number `run`: 1 +- drift, a sine over the runs."""
    return 1.0 + drift * math.sin(2 * math.pi * run / period)


def observed(c: dict, run: int, noise: float = 0.0, seed: int = 0, drift: float = 0.0,
             period: float = 40.0) -> float:
    """What run number `run` of these constants reports: the landscape, slowed or sped up by the
    drift, plus Gaussian noise that depends only on (seed, run)."""
    value = landscape_value(c) * speed(run, drift, period) ** -STEPS_EXPONENT
    return value + random.Random(f"landscape:{seed}:{run}").gauss(0.0, noise)


def run_number() -> int:
    if "LANDSCAPE_RUN" in os.environ:
        return int(os.environ["LANDSCAPE_RUN"])
    path = os.environ.get("LANDSCAPE_COUNTER_FILE")
    if not path:
        return 0
    import fcntl

    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # parallel runs get distinct numbers
        f.seek(0)
        n = len(f.read())
        f.write(".")
    return n


def main():
    env = os.environ.get
    constants = {name: value for name, value in globals().items()
                 if name in OPTIMUM}  # this file's own knobs, as edited
    run = run_number()
    drift, period = float(env("LANDSCAPE_DRIFT", "0")), float(env("LANDSCAPE_DRIFT_PERIOD", "40"))
    value = observed(constants, run, float(env("LANDSCAPE_NOISE", "0")),
                     int(env("LANDSCAPE_SEED", "0")), drift, period)
    steps = round(BASE_STEPS * 2**19 / TOTAL_BATCH_SIZE * speed(run, drift, period))
    params_m = 12 * DEPTH * (DEPTH * ASPECT_RATIO) ** 2 / 1e6
    profile = env("AUTORESEARCH_PROFILE", "cpu")
    print(f"profile: {profile} | device: landscape | params: {params_m:.1f}M", flush=True)
    for step in range(3):
        print(f"step {step:05d} ({100 * (step + 1) / 3:.1f}%) | loss 4.{step}00000 | lrm 1.00 | "
              f"dt 10ms | tok/s 1,000 | mfu 1.0% | epoch 1 | remaining {3 - step}s", flush=True)
    print(f"profile: {profile}")
    print("---")
    print(f"val_bpb:          {value:.6f}")
    print("training_seconds: 300.0")
    print("total_seconds:    300.5")
    print("peak_vram_mb:     2048.0")
    print("mfu_percent:      40.00")
    print(f"total_tokens_M:   {steps * TOTAL_BATCH_SIZE / 1e6:.1f}")
    print(f"num_steps:        {steps}")
    print(f"num_params_M:     {params_m:.1f}")
    print(f"depth:            {DEPTH}")


if __name__ == "__main__":
    main()

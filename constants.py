"""
The fixed rules of the game. Not edited by the agent; the loop checks this file's hash before
every run.

Numbers are only comparable within one profile: a profile fixes the context length, the training
time budget and the evaluation size. The default is the H100 profile; smaller machines pick
another without editing any file:

    AUTORESEARCH_PROFILE=consumer uv run train.py    # 24 GB GPUs (RTX 4090/3090, L4, A10, Apple)
    AUTORESEARCH_PROFILE=cpu uv run train.py         # tiny: tests and demos, under a minute

The active profile is printed in train.py's output and recorded in results.tsv.
"""

import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Profile:
    max_seq_len: int  # context length of training and evaluation
    time_budget: int  # seconds of training (start-up and compilation excluded)
    eval_tokens: int  # validation tokens in the final val_bpb


PROFILES = {
    "h100": Profile(max_seq_len=2048, time_budget=300, eval_tokens=40 * 524288),
    "consumer": Profile(max_seq_len=1024, time_budget=300, eval_tokens=10 * 524288),
    "cpu": Profile(max_seq_len=256, time_budget=10, eval_tokens=16 * 1024),
}
DEFAULT_PROFILE = "h100"

PROFILE = os.environ.get("AUTORESEARCH_PROFILE", DEFAULT_PROFILE).strip().lower()
if PROFILE not in PROFILES:
    # constants.py is imported by everything; a bad value must read as one line, not a traceback
    sys.exit(
        f"error: unknown AUTORESEARCH_PROFILE={PROFILE!r}; choose one of "
        f"{', '.join(PROFILES)} (unset it for the default, {DEFAULT_PROFILE})"
    )

MAX_SEQ_LEN = PROFILES[PROFILE].max_seq_len
TIME_BUDGET = PROFILES[PROFILE].time_budget
EVAL_TOKENS = PROFILES[PROFILE].eval_tokens

# A shorter budget for quick measurements (a device benchmark, the loop tried on a GPU):
# AUTORESEARCH_TIME_BUDGET=45. The loop records such runs as their own profile ("h100@45s"), so
# their numbers are never compared with full-budget ones.
_BUDGET = os.environ.get("AUTORESEARCH_TIME_BUDGET", "").strip()
if _BUDGET:
    try:
        TIME_BUDGET = float(_BUDGET)
        assert TIME_BUDGET > 0
    except (ValueError, AssertionError):
        sys.exit(f"error: AUTORESEARCH_TIME_BUDGET={_BUDGET!r} is not a number of seconds above "
                 "zero; unset it for the profile's budget")

# Tokenizer: one per data set, shared by all profiles.
VOCAB_SIZE = 8192
# GPT-4-style split pattern, with \p{N}{1,2} instead of {1,3}: fewer number tokens for a small vocab
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = [f"<|reserved_{i}|>" for i in range(4)]
BOS_TOKEN = SPECIAL_TOKENS[0]  # every document (and every packed row) starts with it

# Where data and the tokenizer live. One cache directory holds one data set.
CACHE_DIR = Path(os.environ.get("AUTORESEARCH_CACHE", Path.home() / ".cache" / "autoresearch"))
DATA_DIR = CACHE_DIR / "data"
TOKENIZER_DIR = CACHE_DIR / "tokenizer"
DATASET_MANIFEST = DATA_DIR / "dataset.json"  # which shards exist and which one is validation

# The public data set the autoresearch ecosystem trains on (Hugging Face hub)
DATASET_URL = os.environ.get(
    "AUTORESEARCH_DATA_URL",
    "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main",
)
MAX_SHARD = 6542  # shard_00000.parquet ... shard_06542.parquet
VAL_SHARD = MAX_SHARD  # validation is pinned to the last shard

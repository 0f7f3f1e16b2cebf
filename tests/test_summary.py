"""The strict summary parser, the progress parser and the crash classifier."""

import math

import pytest

from autoresearch.execution.parse import (
    LOG_REASONS,
    classify_crash,
    last_progress,
    log_tail,
    parse_profile,
    parse_summary,
    read_run,
)

BLOCK = """profile: cpu
---
val_bpb:          0.997900
training_seconds: 300.1
total_seconds:    325.9
peak_vram_mb:     45060.2
mfu_percent:      39.80
total_tokens_M:   499.6
num_steps:        953
num_params_M:     50.3
depth:            8
"""
PROGRESS = ("step 00042 (14.0%) | loss 4.123456 | lrm 1.00 | dt 312ms | tok/s 1,680,000 | "
            "mfu 39.8% | epoch 1 | remaining 258s")


def test_parses_the_block():
    values = parse_summary("some output\n" + BLOCK)
    assert values["val_bpb"] == 0.9979
    assert values["num_steps"] == 953 and values["depth"] == 8
    assert list(values) == ["val_bpb", "training_seconds", "total_seconds", "peak_vram_mb",
                            "mfu_percent", "total_tokens_M", "num_steps", "num_params_M", "depth"]
    assert parse_profile(BLOCK) == "cpu"


def test_stray_val_bpb_lines_are_never_trusted():
    assert parse_summary("val_bpb: 0.5\nstep 1\n") is None
    # a stray line before the real block does not change the value
    assert parse_summary("val_bpb: 0.100000\n" + BLOCK)["val_bpb"] == 0.9979
    # ...and one after the block does not either
    assert parse_summary(BLOCK + "val_bpb: 0.1\n")["val_bpb"] == 0.9979


def test_only_the_last_block_counts():
    first = BLOCK.replace("0.997900", "0.500000")
    assert parse_summary(first + "restarting\n" + BLOCK)["val_bpb"] == 0.9979
    # a later `---` that is not followed by a block makes the log unusable, not the old block
    assert parse_summary(BLOCK + "---\nval_bpb: 0.1\n") is None


@pytest.mark.parametrize("broken", [
    BLOCK.replace("training_seconds: 300.1\n", ""),  # missing key
    BLOCK.replace("val_bpb:          0.997900\ntraining_seconds: 300.1",
                  "training_seconds: 300.1\nval_bpb:          0.997900"),  # wrong order
    BLOCK.replace("0.997900", "about 1"),  # not a number
    BLOCK.replace("---\n", "---\n\n"),  # something between --- and the keys
    BLOCK.replace("depth:            8\n", ""),  # truncated log
    BLOCK.replace("---", "--- "),  # no line that is exactly ---
    BLOCK.replace("val_bpb:", "val_bpb_ema:"),
])
def test_malformed_blocks_are_rejected(broken):
    assert parse_summary(broken) is None


def test_carriage_returns_and_nan():
    redraw = "\r".join([PROGRESS] * 3) + "\r\n"
    assert parse_summary(redraw + BLOCK.replace("\n", "\r\n"))["val_bpb"] == 0.9979
    values = parse_summary(BLOCK.replace("0.997900", "nan"))
    assert math.isnan(values["val_bpb"])


def test_malformed_progress_percentages_are_skipped_not_fatal():
    # train.py is the agent's: a line the float() of the parser cannot read must not raise
    assert last_progress("step 00001 (1.2.3%) | loss 4.0 | remaining 3s") is None
    assert last_progress(PROGRESS + "\nstep 1 (.%) | loss 1 | remaining 3s\n").step == 42


def test_progress_lines():
    p = last_progress("noise\n" + PROGRESS + "\r" + PROGRESS.replace("00042", "00043")
                      .replace("14.0%", "14.3%").replace("258s", "257s") + "\r")
    assert (p.step, p.progress_pct, p.loss, p.remaining_s) == (43, 14.3, 4.123456, 257)
    assert last_progress("nothing here") is None


CRASH_CASES = [
    (None, "step 1", True, "timeout"),
    (1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", False, "oom"),
    (3, "error: loss is not finite", False, "nan"),
    (3, "error: loss exploded", False, "nan"),
    (3, "", False, "nan"),
    (1, '  File "train.py", line 3\n    x = (\nSyntaxError: invalid syntax', False, "syntax"),
    (1, "IndentationError: unexpected indent", False, "syntax"),
    (1, "ModuleNotFoundError: No module named 'flash_attn'", False, "import"),
    (1, "ImportError: cannot import name 'foo'", False, "import"),
    (1, "RuntimeError: boom", False, "other"),
    (-9, "", False, "other"),
    # the last signature printed wins: an early OOM warning, then an import failure
    (1, "warning: out of memory, retrying\nModuleNotFoundError: x", False, "import"),
]


@pytest.mark.parametrize("returncode, text, timed_out, reason", CRASH_CASES)
def test_crash_classes(returncode, text, timed_out, reason):
    assert classify_crash(returncode, text, timed_out) == reason


def test_every_documented_crash_reason_is_produced():
    assert {case[-1] for case in CRASH_CASES} == set(LOG_REASONS)


def test_read_run_verdicts():
    assert read_run(0, BLOCK, False).metrics["val_bpb"] == 0.9979
    assert read_run(0, BLOCK, False).profile == "cpu"
    assert read_run(1, BLOCK, False).reason == "other"  # a block does not excuse a bad exit
    assert read_run(0, "val_bpb: 0.9\n", False).reason == "other"
    assert read_run(0, BLOCK.replace("0.997900", "inf"), False).reason == "nan"
    assert read_run(0, BLOCK.replace("953", "nan"), False).reason == "nan"  # any key, not just bpb
    assert read_run(None, BLOCK, True).reason == "timeout"


def test_log_tail_is_bounded():
    text = "\n".join(f"line {i}" for i in range(1000))
    tail = log_tail(text, max_lines=10)
    assert tail.splitlines() == [f"line {i}" for i in range(990, 1000)]
    assert len(log_tail("x" * 100000)) <= 6000

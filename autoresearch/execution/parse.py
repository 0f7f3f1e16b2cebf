"""Read what train.py printed: progress lines, the summary block, and why a run crashed.

The summary block is parsed strictly: the LAST line that is exactly `---`, followed at once by
the nine keys below in this order, each `key: number`. A `val_bpb:` line anywhere else (a debug
print, an old block from an earlier crash-and-retry in the same log) is never trusted, because a
wrong number here silently steers the whole research run.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from autoresearch.target import LOSS, Metric

SUMMARY_KEYS = ("val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
                "total_tokens_M", "num_steps", "num_params_M", "depth")
TAMPER = "tamper"  # the run changed the harness while it ran: void (set by the loop)
LOST = "lost"  # the run was lost again and again outside it, e.g. its node died (set by the loop)
LOG_REASONS = ("oom", "nan", "timeout", "syntax", "import", "other")  # read from a run's log
CRASH_REASONS = (*LOG_REASONS, TAMPER, LOST)
# Crashes worth handing back to the agent for a fix: mistakes in the code, not research outcomes
# (a diverging loss or a model too big for the GPU is an answer, not a typo).
FIXABLE_REASONS = ("syntax", "import", "other")

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_SUMMARY_LINE = re.compile(rf"^(\w+):\s+({_NUMBER})\s*$", re.IGNORECASE)
_PROFILE_LINE = re.compile(r"^profile:\s*(\S+)\s*$")
_PROGRESS_LINE = re.compile(
    r"step (\d+) \(\s*(\d+(?:\.\d*)?)%\)\s*\|\s*loss ([-+\w.]+).*?\|\s*remaining (\d+)s")
# Crash signatures in train.py's output; the one printed LAST wins (a traceback at the end of the
# log explains the exit better than a warning printed early on).
_CRASH_PATTERNS = {
    "oom": re.compile(r"OutOfMemoryError|CUDA out of memory|out of memory", re.IGNORECASE),
    "nan": re.compile(r"loss is not finite|loss exploded"),
    "syntax": re.compile(r"\b(SyntaxError|IndentationError|TabError)\b"),
    "import": re.compile(r"\b(ImportError|ModuleNotFoundError)\b"),
}
NAN_EXIT_CODE = 3  # train.py exits with 3 on a non-finite or exploding loss


@dataclass
class RunVerdict:
    metrics: dict[str, float] | None  # the summary block of a usable run, None for a crash
    reason: str  # "" for a usable run, else one of CRASH_REASONS
    profile: str


@dataclass
class Progress:
    step: int
    progress_pct: float
    loss: float
    remaining_s: int


def split_lines(text: str) -> list[str]:
    """Split on \\n, \\r\\n and bare \\r: progress lines may be redrawn with carriage returns."""
    return re.split(r"\r\n|\r|\n", text)


def parse_summary(text: str) -> dict[str, float] | None:
    """The strict summary block of a run log, or None when there is no valid one.

    Values are floats (num_steps and depth too); nan/inf are returned as such so the caller can
    classify a non-finite metric as a crash rather than mistake it for a missing block.
    """
    lines = split_lines(text)
    starts = [i for i, line in enumerate(lines) if line == "---"]
    if not starts:
        return None
    block = lines[starts[-1] + 1: starts[-1] + 1 + len(SUMMARY_KEYS)]
    if len(block) != len(SUMMARY_KEYS):
        return None
    values = {}
    for key, line in zip(SUMMARY_KEYS, block, strict=True):
        match = _SUMMARY_LINE.match(line)
        if not match or match.group(1) != key:
            return None
        values[key] = float(match.group(2))
    return values


def parse_profile(text: str) -> str:
    """The `profile: <name>` line train.py prints before its summary (last one wins), or ''."""
    found = ""
    for line in split_lines(text):
        match = _PROFILE_LINE.match(line.strip())
        if match:
            found = match.group(1)
    return found


def last_progress(text: str) -> Progress | None:
    """The most recent `step 00042 (14.0%) | loss ... | remaining 258s` line, if any."""
    for line in reversed(split_lines(text)):
        match = _PROGRESS_LINE.search(line)
        if match:
            try:
                loss = float(match.group(3))
            except ValueError:
                loss = math.nan
            return Progress(int(match.group(1)), float(match.group(2)), loss, int(match.group(4)))
    return None


def classify_crash(returncode: int | None, text: str, timed_out: bool) -> str:
    """One of LOG_REASONS for a run that did not produce a usable val_bpb."""
    if timed_out:
        return "timeout"
    latest, reason = -1, "other"
    for name, pattern in _CRASH_PATTERNS.items():
        for match in pattern.finditer(text):
            if match.start() > latest:
                latest, reason = match.start(), name
    if reason == "other" and returncode == NAN_EXIT_CODE:
        return "nan"
    return reason


def read_run(returncode: int | None, text: str, timed_out: bool) -> RunVerdict:
    """Judge a finished run: usable only with exit 0 and a strict summary of finite numbers."""
    profile = parse_profile(text)
    metrics = None if timed_out or returncode != 0 else parse_summary(text)
    if metrics is None:
        return RunVerdict(None, classify_crash(returncode, text, timed_out), profile)
    if not all(math.isfinite(value) for value in metrics.values()):
        return RunVerdict(None, "nan", profile)  # a block with nan/inf in it is not a result
    return RunVerdict(metrics, "", profile)


def parse_block(text: str) -> dict[str, float]:
    """A target's summary block, read loosely: the `key: number` lines right after the LAST
    line that is exactly `---` (any keys, any order; the block ends at the first other line).
    Only the last block counts, as in parse_summary."""
    lines = split_lines(text)
    starts = [i for i, line in enumerate(lines) if line == "---"]
    values: dict[str, float] = {}
    for line in lines[starts[-1] + 1:] if starts else []:
        match = _SUMMARY_LINE.match(line)
        if not match:
            break
        values.setdefault(match.group(1), float(match.group(2)))
    return values


def read_json_metrics(path: Path) -> dict[str, float]:
    """The numbers of the JSON object a run wrote; {} when there is none or it is no object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def read_target_run(metric: Metric, returncode: int | None, text: str, timed_out: bool,
                    run_dir: Path) -> RunVerdict:
    """Judge a finished run of a target's command: usable only with exit 0 and a finite value
    of the metric (from the summary block, or from metric.file in the run folder). Its metrics
    are the metric's value, the extra keys it reported, and LOSS, the loss the loop compares."""
    profile = parse_profile(text)
    if timed_out or returncode != 0:
        return RunVerdict(None, classify_crash(returncode, text, timed_out), profile)
    found = read_json_metrics(run_dir / metric.file) if metric.file else parse_block(text)
    value = found.get(metric.name)
    if value is None:
        return RunVerdict(None, "other", profile)
    if not math.isfinite(value):
        return RunVerdict(None, "nan", profile)
    extra = {k: found[k] for k in metric.extra if k in found}
    return RunVerdict({LOSS: metric.loss(value), metric.name: value, **extra}, "", profile)


_ERROR_LINE = re.compile(r"(Error|Exception|error:|Errno|Killed|fatal|not found|No such)",
                         re.IGNORECASE)


def last_error(text: str) -> str:
    """The log's own last error line (else its last line): what a crash message should quote."""
    lines = [line.strip() for line in split_lines(text) if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line) and not _PROGRESS_LINE.search(line):
            return line[:300]
    return lines[-1][:300] if lines else ""


def log_tail(text: str, max_lines: int = 60, max_chars: int = 6000) -> str:
    """The end of a run log, sized for an agent prompt (progress redraws collapsed)."""
    lines = [line for line in split_lines(text) if line.strip()]
    tail = "\n".join(lines[-max_lines:])
    return tail[-max_chars:]

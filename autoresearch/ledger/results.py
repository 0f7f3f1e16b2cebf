"""results.tsv: the loop's ledger, one row per training run.

The first five columns are the ones every autoresearch tool reads (commit, val_bpb, memory_gb,
status, description); ours add more after them. A target of its own (target.py) names the second
column after its metric and holds the metric's own value there; in memory a Row's `val_bpb` is
always the loss the loop compares (Metric.loss), so the conversion happens here, at the file.
Files written by other tools have only the five
and must read fine. The loop is the only writer; each row is flushed and fsynced before git is
touched, so a crash never leaves git ahead of the ledger.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.model import Row, Status
from autoresearch.redact import sanitize
from autoresearch.target import DEFAULT, Metric, metric_beside

STATUSES = tuple(s.value for s in Status)

STANDARD_COLUMNS = ["commit", "val_bpb", "memory_gb", "status", "description"]
EXTRA_COLUMNS = [
    "experiment",  # 1-based experiment number within the tag
    "kind",  # baseline / noise / experiment / confirm / fix
    "tag",  # the run tag (branch autoresearch/<tag>)
    "timestamp",  # ISO-8601 UTC, when the run finished
    "profile",  # hardware profile (constants.py); never compare numbers across profiles
    "training_seconds",
    "total_seconds",
    "mfu_percent",
    "total_tokens_M",
    "num_steps",
    "reason",  # crash class (oom, nan, timeout, syntax, import, other) or why a run was discarded
    "agent",  # backend[:model]
    "cost_usd",  # agent cost of this proposal, where the backend reports it
    "run_dir",  # runs/<tag>/<n>-<commit>/ relative to the repo root
    "parent",  # the best commit it was proposed on and judged against
    "worker",  # which worker ran it (0, 1, ...): one per GPU slot
    "gpu",  # the GPU it ran on (CUDA_VISIBLE_DEVICES), empty on the CPU
    "device",  # the device model ("NVIDIA H200", "cpu"): numbers compare only within one
    "node",  # the host it ran on
    # the evidence of a candidate's paired confirmation, on its own row (policy.Verdict):
    "pairs",  # (control, candidate) pairs run
    "gain",  # the keep test's mean gain over the parent (positive = better)
    "gain_low",  # its interval: kept only when gain_low clears the floor
    "gain_high",
    "p_value",  # one-sided, against the floor, scaled to the looks: below alpha when kept
    "private_bpb",  # the weights' bpb on the private held-out split (kept and baseline runs)
    "private_delta",  # private_bpb - its parent's (negative = better), beside the public gain
]
COLUMNS = STANDARD_COLUMNS + EXTRA_COLUMNS
# Rows written before the header grew keep their width after upgrade_header: a shorter row of
# any other width is torn (a write cut short), never a row with empty cells at the end
EARLIER_WIDTHS = (COLUMNS.index("run_dir") + 1,  # before the parallel loop's parent..node
                  COLUMNS.index("node") + 1)  # before the evidence and private columns


_FLOAT_FIELDS = {"val_bpb", "memory_gb", "training_seconds", "total_seconds", "mfu_percent",
                 "total_tokens_M", "cost_usd", "gain", "gain_low", "gain_high", "p_value",
                 "private_bpb", "private_delta"}
_INT_FIELDS = {"experiment", "num_steps", "worker", "pairs"}
# six decimals: gains are ~1e-4
_BPB_FIELDS = {"val_bpb", "gain", "gain_low", "gain_high", "private_bpb", "private_delta"}
_KNOWN = {f.name for f in fields(Row)}


def _format(name: str, value: object) -> str:
    if value is None:
        return ""
    if name in _BPB_FIELDS:
        return f"{value:.6f}"
    if name == "p_value":
        return f"{value:.3g}"
    if name == "memory_gb":
        return f"{value:.1f}"
    if name == "cost_usd":
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, str):
        return sanitize(value)
    return str(value)


def _parse(name: str, text: str) -> object:
    """A cell as its field's type; ValueError when a number column holds something else."""
    text = text.strip()
    if name in _FLOAT_FIELDS:
        if not text:
            return 0.0 if name in ("val_bpb", "memory_gb") else None
        return float(text)
    if name in _INT_FIELDS:
        return int(text) if text else None
    return text


def columns(metric: Metric = DEFAULT.metric) -> list[str]:
    """results.tsv's header for a metric: karpathy's for val_bpb, the metric's name in the
    second column for any other."""
    return [metric.name if name == "val_bpb" else name for name in COLUMNS]


def format_row(row: Row, metric: Metric = DEFAULT.metric) -> str:
    """One line of results.tsv; the loss is written as the metric's own value."""
    def cell(name: str) -> str:
        value = getattr(row, name)
        return _format(name, metric.value(value) + 0.0 if name == "val_bpb" else value)  # no -0
    return "\t".join(cell(name) for name in COLUMNS)


def read_results(path: Path | str, problems: list[str] | None = None,
                 metric: Metric | None = None) -> list[Row]:
    """Read any results.tsv: ours (all columns) or another tool's (the standard five), its metric
    column (`metric.name`; by default the metric of the pyproject.toml beside the file, val_bpb
    without one) read into each Row's val_bpb as the loss.

    Columns are matched by header name, so extra or reordered columns are fine; unknown ones are
    ignored. A missing file reads as no rows. A row is never guessed at: one that cannot be read
    as written (more cells than the header, fewer than any header of ours had: torn, a number
    column holding text, an unknown status) is left out, and so is a later row repeating an
    experiment number of its tag (the first one counts). Each is described in `problems`, when
    given, as "results.tsv line N: <what is wrong>; row skipped".
    """
    path = Path(path)
    if not path.exists():
        return []
    metric = metric or metric_beside(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable results.tsv ({e})") from None
    # the metric's column read as val_bpb, the name the Row and the rest of the loop use
    header = ["val_bpb" if h.strip() == metric.name else h.strip()
              for h in lines[0].rstrip("\r").split("\t")]
    if header == [""]:
        return []
    missing = [metric.name if c == "val_bpb" else c for c in STANDARD_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path} is not a results.tsv: header lacks {', '.join(missing)}")
    rows, first_line = [], {}  # (tag, experiment) -> the line that has it
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            row = _read_row(header, line.split("\t"))
            row.val_bpb = metric.loss(row.val_bpb)
            key = (row.tag, row.experiment)
            if row.experiment is not None and key in first_line:
                of_tag = f" of tag {row.tag}" if row.tag else ""
                raise ValueError(f"experiment {row.experiment}{of_tag} is already on line "
                                 f"{first_line[key]}")
        except ValueError as e:
            if problems is not None:
                problems.append(f"{path.name} line {number}: {e}; row skipped")
            continue
        first_line.setdefault(key, number)
        rows.append(row)
    return rows


def read_reported(path: Path | str, warn: Callable[[str], None], reported: set[str],
                  metric: Metric | None = None) -> list[Row]:
    """read_results, each problem handed to `warn` once: a long-running caller keeps `reported`,
    the problems already told, between reads."""
    problems: list[str] = []
    rows = read_results(path, problems, metric)
    for problem in problems:
        if problem not in reported:
            reported.add(problem)
            warn(problem)
    return rows


def _read_row(header: list[str], cells: list[str]) -> Row:
    """One line's cells as a Row; ValueError saying what is wrong when they do not make one."""
    if len(cells) > len(header):
        raise ValueError(f"{len(cells)} cells, but the header names {len(header)} columns")
    values = {}
    for name, cell in zip(header, cells, strict=False):  # a row of an earlier, shorter header
        if name in _KNOWN:
            try:
                values[name] = _parse(name, cell)
            except ValueError:
                raise ValueError(f"{name} {cell.strip()!r} is not a number") from None
    for name in STANDARD_COLUMNS:
        values.setdefault(name, _parse(name, ""))
    if values["status"] not in STATUSES:
        raise ValueError(f"status {values['status']!r} is not one of {', '.join(STATUSES)}")
    if len(cells) < len(header) and not (len(cells) in EARLIER_WIDTHS
                                         and header[:len(cells)] == COLUMNS[:len(cells)]):
        raise ValueError(f"{len(cells)} cells, but the header names {len(header)} columns "
                         f"(a torn row)")
    return Row(**values)


def append_result(path: Path | str, row: Row, metric: Metric = DEFAULT.metric) -> None:
    """Append one row (writing the header first if the file is new), flushed and fsynced."""
    path = Path(path)
    if row.status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.status!r}")
    new = not path.exists() or path.stat().st_size == 0
    # A file saved without its final newline (a hand edit) would glue this row onto the last one
    unterminated = not new and _last_byte(path) != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(columns(metric)) + "\n")
        elif unterminated:
            f.write("\n")
        f.write(format_row(row, metric) + "\n")
        f.flush()
        os.fsync(f.fileno())


def upgrade_header(path: Path, metric: Metric = DEFAULT.metric) -> bool:
    """Give a results.tsv written by an earlier version of this loop (its header a prefix of
    COLUMNS) today's header, so that appended rows line up with their names. Rows are kept byte
    for byte; the file is replaced atomically. False if there was nothing to upgrade."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    header, _, body = path.read_text(encoding="utf-8").partition("\n")
    names, today = header.split("\t"), columns(metric)
    ours = len(names) > len(STANDARD_COLUMNS) and names == today[: len(names)]
    if names == today or not ours:  # the five standard columns alone: another tool's file
        return False
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\t".join(today) + "\n" + body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return True


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)

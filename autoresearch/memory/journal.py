"""The research journal of a tag: one entry per training run, written by the loop (never the agent).

Kept as .autoresearch/<tag>/journal.jsonl beside the tag's state. Each entry says what was tried
(the agent's one-line description and hypothesis, the change as a short summary), how it came out
(val_bpb, the delta against the code it was proposed on, kept / discarded / crashed and why) and
how it relates to other runs (a re-try, a reversal, a port, a confirmation). A target's extra
metrics (target.py's metric.extra: a fit time, a memory peak) are kept with the run they are of.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from autoresearch.memory.fingerprint import Code, changes, constants, fingerprint
from autoresearch.model import AGENT_KINDS, Row, is_measured
from autoresearch.names import METRICS
from autoresearch.redact import redact_tree


@dataclass
class Entry:
    n: int  # run number within the tag (results.tsv `experiment`)
    kind: str  # baseline noise experiment fix confirm control port
    commit: str  # 7 hex digits
    parent: str  # the best commit it was proposed on (7 hex digits)
    worker: int
    description: str  # the agent's one line
    hypothesis: str = ""  # why the agent expected it to help, where it said so
    changes: list[str] = field(default_factory=list)  # e.g. "MATRIX_LR 0.04 -> 0.05", "def norm"
    constants: dict[str, object] = field(default_factory=dict)  # top-level literals that ran
    fingerprint: str = ""  # hash of the normalised program that ran (memory/fingerprint.py)
    status: str = ""  # keep discard crash
    val_bpb: float | None = None  # None for a crash
    delta: float | None = None  # val_bpb - the parent's value (negative = better)
    reason: str = ""
    links: dict[str, int] = field(default_factory=dict)  # e.g. {"retry_of": 12, "port_of": 14}
    timestamp: str = ""
    best: float | None = None  # a keep: the night's best after it (ledger/values.progress)
    private_delta: float | None = None  # the same on the private held-out split (never shown
    # to agents: memory/digest.py reads the fields it names)
    extra: dict[str, float] = field(default_factory=dict)  # the target's extra metrics, as the
    # run reported them (run_extras)


JOURNAL = "journal.jsonl"  # under .autoresearch/<tag>/


def load(path: Path) -> list[Entry]:
    """Every entry of a journal file, first one per run number; a torn last line (kill -9 in the
    middle of a write) is skipped: the next `finish` or rebuild writes it again."""
    entries: dict[int, Entry] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            entry = Entry(**json.loads(line))
        except (ValueError, TypeError):
            continue
        entries.setdefault(entry.n, entry)
    return sorted(entries.values(), key=lambda e: e.n)


def append(path: Path, entries: list[Entry]) -> None:
    """Add entries, flushed and fsynced (one line each), secrets redacted."""
    if not entries:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(redact_tree(asdict(entry)), default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


class Commits(Protocol):
    """What entry building reads from git."""

    def sources_at(self, commit: str) -> dict[str, str]: ...
    def parent(self, commit: str) -> str | None: ...
    def hypothesis(self, commit: str) -> str: ...


def new_entries(rows: list[Row], git: Commits, earlier: list[Entry],
                subjects: dict[int | None, int | None], bests: dict[int | None, float],
                expected: Callable[[str, int | None], float | None],
                extras: Callable[[Row], dict[str, float]] = lambda row: {}) -> list[Entry]:
    """The entries of the rows that have none in `earlier`, from the code each ran and its
    parent's. `expected(commit, worker)`: a commit's fitted value on a worker; `bests`: the
    night's best after each keep; `extras(row)`: the extra metrics its run reported."""
    known = {e.n for e in earlier}
    new: list[Entry] = []
    for row in rows:
        if row.experiment in known:
            continue
        code = git.sources_at(row.commit)
        parent = None if row.kind == "baseline" else \
            row.parent or git.parent(row.commit)  # rows of older versions: git's
        parent_value = expected(parent, row.worker) if parent and \
            row.kind not in ("noise", "control") else None
        new.append(make_entry(
            row, code, git.sources_at(parent) if parent else None, parent_value,
            git.hypothesis(row.commit), earlier + new, subjects.get(row.experiment),
            bests.get(row.experiment) if row.status == "keep" else None, extras(row)))
    return new


def make_entry(row: Row, code: Code, parent_code: Code | None, parent_value: float | None,
               hypothesis: str, earlier: list[Entry], subject: int | None,
               best: float | None = None, extra: dict[str, float] | None = None) -> Entry:
    """The journal entry of a recorded row, from the code that ran and its parent's code."""
    has_value = is_measured(row)
    entry = Entry(
        n=row.experiment, kind=row.kind, commit=row.commit, parent=row.parent,
        worker=row.worker or 0, description=row.description, hypothesis=hypothesis,
        changes=changes(parent_code, code) if parent_code is not None else [],
        constants=_plain(constants(code)), fingerprint=fingerprint(code), status=row.status,
        val_bpb=row.val_bpb if has_value else None,
        delta=_delta(row, parent_value) if has_value else None,
        reason=row.reason, timestamp=row.timestamp, best=best, private_delta=row.private_delta,
        extra=dict(extra or {}))
    entry.links = links(entry, earlier, subject)
    return entry


def run_extras(run_dir: Path, names: tuple[str, ...]) -> dict[str, float]:
    """The extra metrics `names` that a run reported, from the metrics.json of its folder (the
    loop writes it before the run is recorded); {} where the folder or a number is missing."""
    try:
        summary = json.loads((run_dir / METRICS).read_text(encoding="utf-8")).get("summary")
    except (OSError, ValueError, AttributeError):
        return {}
    summary = summary if isinstance(summary, dict) else {}
    return {name: summary[name] for name in names if isinstance(summary.get(name), int | float)}


def describe_extra(extra: dict[str, float]) -> str:
    """`fit_seconds 0.25, peak_mb 812`: a run's extra metrics as a view writes them."""
    return ", ".join(f"{name} {value:.6g}" for name, value in extra.items())


def _delta(row: Row, parent_value: float | None) -> float | None:
    """Against its parent: a candidate's mean paired gain where pairs judged it (the number every
    view shows for a keep), else its run against the parent's value."""
    if row.gain is not None:
        return -row.gain
    return row.val_bpb - parent_value if parent_value is not None else None


SUBJECT = re.compile(r"#(\d+)")  # "confirm #12: ...", "control for #12", "port of #12 onto"


def subject_of(row: Row) -> int | None:
    """The run a confirm, control or port row is about, from its description."""
    if row.kind not in ("confirm", "control", "port"):
        return None
    match = SUBJECT.search(row.description)
    return int(match.group(1)) if match else None


def links(entry: Entry, earlier: list[Entry], subject: int | None) -> dict[str, int]:
    """How a run relates to earlier ones: what it confirms, controls, ports or fixes; an earlier
    run with the same change (a re-try); a kept change it reverses."""
    found: dict[str, int] = {}
    if subject is not None:
        found[{"confirm": "confirms", "control": "control_for", "port": "port_of",
               "fix": "fix_of"}.get(entry.kind, "about")] = subject
    if entry.kind not in AGENT_KINDS or not entry.changes:
        return found
    mine = set(entry.changes)
    for other in reversed(earlier):
        if other.kind not in AGENT_KINDS:
            continue
        if "retry_of" not in found and set(other.changes) == mine:
            found["retry_of"] = other.n
        if "reverses" not in found and other.status == "keep" and \
                {_reverse(c) for c in other.changes} == mine:
            found["reverses"] = other.n
    return found


def _reverse(change: str) -> str:
    """`X a -> b` becomes `X b -> a`; anything else stays as it is."""
    name, _, move = change.partition(" ")
    old, arrow, new = move.partition(" -> ")
    return f"{name} {new} -> {old}" if arrow else change


def _plain(values: dict[str, object]) -> dict[str, object]:
    """JSON-friendly constants (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

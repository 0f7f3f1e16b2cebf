"""The research journal of a tag: one entry per training run, written by the loop (never the agent).

Kept as .autoresearch/<tag>/journal.jsonl beside the tag's state. Each entry says what was tried
(the agent's one-line description and hypothesis, the change as a short summary), how it came out
(val_bpb, the delta against the code it was proposed on, kept / discarded / crashed and why) and
how it relates to other runs (a re-try, a reversal, a port, a confirmation).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    fingerprint: str = ""  # hash of the normalised train.py that ran (memory/fingerprint.py)
    status: str = ""  # keep discard crash
    val_bpb: float | None = None  # None for a crash
    delta: float | None = None  # val_bpb - the parent's value (negative = better)
    reason: str = ""
    links: dict[str, int] = field(default_factory=dict)  # e.g. {"retry_of": 12, "port_of": 14}
    timestamp: str = ""

"""The loop's memory on disk, under .autoresearch/<tag>/ (git-ignored).

- state.json: where the tag stands (best commit, noise threshold, counters) and the journal:
  every job not yet finished with its phase (model.py), the candidates waiting for their paired
  runs, the ports decided but not queued yet, the agents' pending tasks and the proposals under
  way. It is rewritten atomically (temp file, fsync, rename) BEFORE each step, so a loop killed
  at any moment can tell what to finish.
- live.json: what each worker is doing now, for `status` and the dashboard. Best effort.
- stop: the flag `agent_loop.py stop` writes ("graceful" or "now").
- events.log: one timestamped line per thing that happened and is not a results row
  (rejected proposals, fix attempts, resumes, undone side effects, pruned checkpoints).
- lock: held by the loop of this tag while it runs.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.model import (
    Candidate,
    Job,
    Port,
    Row,
    Task,
    candidate_from,
    job_from,
    task_from,
)
from autoresearch.policy import Noise

STATE_DIR = ".autoresearch"
VERSION = 2  # of state.json; version 1 (one worker) is upgraded when it is between experiments


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Proposing:
    """An agent at work in its worker's work tree: nothing is committed yet."""

    worker: int
    parent: str  # the best it was given
    kind: str  # experiment, fix or port
    marker: str  # in the environment of every process the agent starts


@dataclass
class Porting:
    """A port decided and not queued yet: its merge onto the best runs outside the coordinator's
    lock (ledger/porter.py), and its run's row waits here until then."""

    port: Port
    row: Row
    subject: int | None = None  # the run the row is about, for its journal entry (a fix's crash)


@dataclass
class State:
    tag: str
    branch: str
    base_commit: str  # where the branch was created: the baseline's code
    created_at: str
    fixed_sha256: dict[str, str]
    data_sha256: str = ""  # the prepared data and tokenizer when the tag started
    best_commit: str | None = None  # the head of the kept line
    noise: Noise | None = None  # the threshold and how it was measured (policy.py)
    next_n: int = 1  # number of the next training run within the tag
    next_id: int = 1  # number of the next job
    cost_usd: float = 0.0  # agent spend so far, including rejected proposals
    cost_unknown: bool = False  # some backend call did not report its cost
    rejections: int = 0  # consecutive unusable proposals (all workers)
    rejected_total: int = 0
    duplicates: int = 0  # proposals not run: the same program had run already (runs saved)
    version: int = VERSION
    jobs: list[Job] = field(default_factory=list)  # the journal: every unfinished run
    candidates: list[Candidate] = field(default_factory=list)  # waiting for paired runs
    tasks: list[Task] = field(default_factory=list)  # fix / port requests for the agents
    proposing: list[Proposing] = field(default_factory=list)
    porting: list[Porting] = field(default_factory=list)  # ports decided, not queued yet
    feedback: dict[str, str] = field(default_factory=dict)  # worker -> why its last was not run


def tag_dir(repo: Path, tag: str) -> Path:
    return repo / STATE_DIR / tag


def state_path(repo: Path, tag: str) -> Path:
    return tag_dir(repo, tag) / "state.json"


def load_state(repo: Path, tag: str) -> State | None:
    path = state_path(repo, tag)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("version", 1) < VERSION:
            data = _upgrade(data, tag)
        return State(**dict(
            data, noise=Noise(**known(Noise, data["noise"])) if data.get("noise") else None,
            jobs=[job_from(j) for j in data.get("jobs", [])],
            candidates=[candidate_from(c) for c in data.get("candidates", [])],
            tasks=[task_from(t) for t in data.get("tasks", [])],
            proposing=[Proposing(**known(Proposing, p)) for p in data.get("proposing", [])],
            porting=[Porting(Port(**p["port"]), Row(**p["row"]), p["subject"])
                     for p in data.get("porting", [])]))
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path} is unreadable ({e}); restore it or start a new --tag") from e


def _upgrade(data: dict, tag: str) -> dict:
    """state.json of the one-worker loop (version 1), between two experiments, to version 2."""
    if data.get("inflight"):
        raise UserError(f"tag {tag} was interrupted by an older version of autoresearch mid-"
                        f"experiment: finish it with that version, or start a new --tag")
    noise = data.get("noise")
    if noise:
        data["noise"] = {k: noise.get(k) for k in
                         ("threshold", "floor", "values", "std", "spread", "rule")}
    return known(State, data) | {"version": VERSION}


def known(record: type, data: dict) -> dict:
    """`data` without the keys `record` has no field for: fields since dropped as never read
    (Noise.runs_requested, Proposing.started_at) still load from an older state.json."""
    names = {f.name for f in fields(record)}
    return {k: v for k, v in data.items() if k in names}


def save_state(repo: Path, state: State) -> None:
    write_json_atomic(state_path(repo, state.tag), asdict(state))


def write_json_atomic(path: Path, data: dict, durable: bool = True) -> None:
    """Readers see the old file or the new one, never half of one; durable: survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def list_tags(repo: Path) -> list[str]:
    root = repo / STATE_DIR
    return sorted(p.parent.name for p in root.glob("*/state.json")) if root.is_dir() else []


# ---- live.json


def write_live(repo: Path, tag: str, values: dict) -> None:
    """Write live.json, secrets redacted (best effort: a dashboard must never stop the loop)."""
    from autoresearch.redact import redact_tree

    path = tag_dir(repo, tag) / "live.json"
    live = dict(redact_tree(values), updated_at=now_iso(), pid=os.getpid())
    try:
        write_json_atomic(path, live, durable=False)  # rewritten every few seconds
    except OSError:
        pass


def read_live(repo: Path, tag: str) -> dict:
    try:
        return json.loads((tag_dir(repo, tag) / "live.json").read_text())
    except (OSError, ValueError):
        return {}


# ---- the stop flag


def request_stop(repo: Path, tag: str, now: bool) -> Path:
    path = tag_dir(repo, tag) / "stop"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("now\n" if now else "graceful\n")
    return path


def stop_requested(repo: Path, tag: str) -> str | None:
    """None, "graceful" (finish the experiment, then exit) or "now" (abort it)."""
    try:
        text = (tag_dir(repo, tag) / "stop").read_text().strip()
    except OSError:
        return None
    return "now" if text == "now" else "graceful"


def clear_stop(repo: Path, tag: str) -> None:
    (tag_dir(repo, tag) / "stop").unlink(missing_ok=True)


# ---- events.log

EVENTS = "events.log"


def log_event(repo: Path, tag: str, message: str) -> None:
    """Append one timestamped line to the tag's events.log, secrets redacted."""
    from autoresearch.redact import redact

    path = tag_dir(repo, tag) / EVENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{now_iso()} {' '.join(redact(message).split())}\n")


# ---- one loop per tag


class TagLock:
    """An flock on .autoresearch/<tag>/lock: two loops of one tag would fight over its branch.

    Loops of different tags may run side by side in one checkout (each in work trees of its own).
    The kernel drops the lock when the process dies, kill -9 included: no stale lock files.
    """

    def __init__(self, repo: Path, tag: str):
        self.path = tag_dir(repo, tag) / "lock"
        self.tag = tag
        self.file = None

    def __enter__(self) -> TagLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            self.file.close()
            raise UserError(f"a loop of tag {self.tag} (pid {holder}) is already running here;"
                            f" watch it with `uv run agent_loop.py status --tag {self.tag}`"
                            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

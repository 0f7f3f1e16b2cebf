"""The loop's memory on disk, under .autoresearch/<tag>/ (git-ignored).

- state.json: where the run stands (best commit, noise threshold, counters) and the in-flight
  journal: which step of which experiment was under way. It is rewritten atomically (temp file,
  fsync, rename) BEFORE each step, so a loop killed at any moment can tell what to finish.
- live.json: progress of the current experiment, for `status` and dashboards. Best effort.
- stop: the flag `agent_loop.py stop` writes ("graceful" or "now").
- events.log: one timestamped line per thing that happened and is not a results row
  (rejected proposals, fix attempts, resumes, pruned checkpoints).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from autoresearch.errors import UserError

STATE_DIR = ".autoresearch"
FIXED_FILES = ("prepare.py", "constants.py")  # the harness: sha256 checked before every run


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class State:
    tag: str
    branch: str
    base_commit: str  # where the branch was created: the baseline's code
    created_at: str
    fixed_sha256: dict[str, str]
    best_commit: str | None = None
    best_val_bpb: float | None = None  # mean of the best commit's runs
    best_runs: list[float] = field(default_factory=list)
    noise: dict | None = None  # the threshold and how it was measured (see noise.py)
    next_n: int = 1  # number of the next training run within the tag
    cost_usd: float = 0.0  # agent spend so far, including rejected proposals
    cost_unknown: bool = False  # some backend call did not report its cost
    rejections: int = 0  # consecutive unusable proposals
    rejected_total: int = 0
    fix: dict | None = None  # a crash the agent is being asked to fix
    inflight: dict | None = None  # the journal: the step under way, None between experiments


def tag_dir(repo: Path, tag: str) -> Path:
    return repo / STATE_DIR / tag


def state_path(repo: Path, tag: str) -> Path:
    return tag_dir(repo, tag) / "state.json"


def load_state(repo: Path, tag: str) -> State | None:
    path = state_path(repo, tag)
    if not path.exists():
        return None
    try:
        return State(**json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise UserError(f"{path} is unreadable ({e}); restore it or start a new --tag") from e


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


def write_live(repo: Path, tag: str, fields: dict) -> None:
    """Write live.json (best effort: a dashboard must never stop the loop)."""
    path = tag_dir(repo, tag) / "live.json"
    live = dict(fields, updated_at=now_iso(), pid=os.getpid())
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


def log_event(repo: Path, tag: str, message: str) -> None:
    path = tag_dir(repo, tag) / "events.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{now_iso()} {' '.join(message.split())}\n")


# ---- one loop per work tree


class RepoLock:
    """An flock on .autoresearch/lock: two loops in one work tree would fight over train.py.

    The kernel drops the lock when the process dies, kill -9 included: no stale lock files.
    """

    def __init__(self, repo: Path):
        self.path = repo / STATE_DIR / "lock"
        self.file = None

    def __enter__(self) -> RepoLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            self.file.close()
            raise UserError(f"another loop (pid {holder}) is running in this work tree; "
                            "watch it with `uv run agent_loop.py status`") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

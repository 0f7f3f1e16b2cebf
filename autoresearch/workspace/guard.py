"""Tripwires on what train.py runs with but does not own: the Python environment, the prepared
data and tokenizer, git's control files, and the user's checkout (its tracked files and
program.md: an agent finds it through `git rev-parse --git-common-dir`, a run through `../../../`).

An agent (or a training run) can write outside its work tree: a `.pth` file in site-packages runs
its code inside every later training run; a bytecode file in a `__pycache__` replaces a module; a
git hook or config entry runs code in the loop's own git calls; a rewritten validation shard makes
any number come out. The guard keeps the metadata of every file in these areas (size, mtime,
ctime, inode, mode, link count: the venv is gigabytes, and ctime changes with every write, so a
content hash is not needed) and the loop compares after every agent turn and every run:

- a new file is copied to the undo folder and removed;
- a changed or deleted file of git's control files or of the checkout is restored (their bytes
  are kept, they are small), a copy of what was written kept in the undo folder;
- a changed or deleted file of the environment or the data cannot be restored from metadata: the
  loop stops with one line saying how to reinstall or re-prepare it;
- a bytecode file that Python itself wrote (a module imported for the first time) is accepted
  after checking that it is exactly the compiled source beside it;
- a file whose only news is its link count (and so its ctime) is accepted: uv hard-links a venv's
  files from its cache, so another venv made or removed elsewhere, or `uv cache clean`, moves
  them without touching their contents.

Each change is blamed on whoever could have made it (Suspects): the runs under way at some moment
since the previous scan began, else the agent turns; the others are not punished.

Not covered: compile caches of torch/Triton/FlashAttention (rewritten by every run), files outside
these areas (e.g. ~/.bashrc), a process running as another user or as root that forges ctime, and
a rewrite that keeps size and mtime and also changes the link count.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import shutil
import site
import stat
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

CONTROL_FILES = ("config", "config.worktree", "hooks", "info")  # in git's common directory
PROGRAM = "program.md"  # the user's instructions to the agents, in the checkout
RUN_LABEL = "run #"  # how a run is named among the suspects ("run #7"); agents: "w1's agent"


@dataclass(frozen=True)
class Area:
    name: str  # "environment", "data", "git"
    roots: tuple[Path, ...]  # files or folders
    keep_bytes: bool = False  # small areas: keep the contents, so changes can be put back
    derived: tuple[str, ...] = ()  # names of caches the harness rebuilds: undone by removal


@dataclass(frozen=True)
class Change:
    area: str
    path: Path
    what: str  # new, changed, deleted

    def __str__(self) -> str:
        return f"{self.path} ({self.what})"


Meta = tuple[int, int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, mode, nlink


def environment_area() -> Area:
    """The Python environment of this interpreter: the whole venv, else its site-packages."""
    if sys.prefix != sys.base_prefix:
        return Area("environment", (Path(sys.prefix),))
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return Area("environment", tuple(Path(d) for d in dirs))


def data_area(cache_dir: Path) -> Area:
    # prepare.py tokenizes the validation split once into tokenizer/val_tokens.npz and rebuilds
    # it when it is missing: a changed copy is removed, not trusted
    return Area("data", (cache_dir / "data", cache_dir / "tokenizer"), derived=("val_tokens",))


def git_area(common_dir: Path) -> Area:
    return Area("git", tuple(common_dir / name for name in CONTROL_FILES), keep_bytes=True)


def checkout_area(repo: Path, tracked: list[str], program: str = PROGRAM) -> Area:
    """The user's checkout: its tracked files and the charter (program.md, or a target's own),
    tracked or not, put back when changed (the loop never writes them; the user steers between
    sessions)."""
    root = repo.resolve()
    names = dict.fromkeys([*tracked, program])  # not a submodule: a folder of any size
    return Area("checkout", tuple(root / name for name in names if not (root / name).is_dir()),
                keep_bytes=True)


def scan(area: Area) -> dict[str, Meta]:
    """Metadata of every file (and symlink) under the area, by path (strings: this runs over
    tens of thousands of files after every agent turn and run)."""
    found: dict[str, Meta] = {}
    stack = []
    for root in map(str, area.roots):
        if os.path.isdir(root) and not os.path.islink(root):
            stack.append(root)
        elif (meta := _meta(root)) is not None:
            found[root] = meta
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif (meta := _meta(entry.path)) is not None:
                    found[entry.path] = meta
    return found


def _meta(path: str) -> Meta | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode, st.st_nlink


def relinked(before: Meta, now: Meta) -> bool:
    """Only the link count moved (ctime with it): a hard link made or removed elsewhere."""
    same = (0, 1, 3, 4)  # size, mtime, inode, mode
    return before[5] != now[5] and all(before[i] == now[i] for i in same)


class Guard:
    def __init__(self, areas: list[Area]):
        self.areas = areas
        self.seen: dict[str, dict[str, Meta]] = {}
        self.kept: dict[str, tuple[bytes, int]] = {}  # path -> (bytes, mode), keep_bytes areas
        self.violations = 0  # a counter: a run that saw it move during its run is void
        self.derived = {area.name: area.derived for area in areas if area.derived}

    def is_derived(self, change: Change) -> bool:
        """A cache the harness rebuilds from the data (e.g. the tokenized validation split)."""
        prefixes = self.derived.get(change.area, ())
        return bool(prefixes) and change.path.name.startswith(prefixes)

    def arm(self) -> None:
        """Take what is there now as the truth."""
        for area in self.areas:
            self.seen[area.name] = scan(area)
            if area.keep_bytes:
                for path, meta in self.seen[area.name].items():
                    if stat.S_ISREG(meta[4]):
                        self.kept[path] = (Path(path).read_bytes(), meta[4])

    def check(self) -> list[Change]:
        """What changed since arm() (bytecode Python wrote for itself is accepted on the way)."""
        changes = []
        for area in self.areas:
            before, now = self.seen[area.name], scan(area)
            for path in sorted(set(before) | set(now)):
                if before.get(path) == now.get(path):
                    continue
                what = "new" if path not in before else "deleted" if path not in now else "changed"
                if what == "changed" and relinked(before[path], now[path]):
                    before[path] = now[path]
                    continue
                if what != "deleted" and area.name == "environment" and is_own_bytecode(Path(path)):
                    before[path] = now[path]
                    continue
                changes.append(Change(area.name, Path(path), what))
        return changes

    def undo(self, changes: list[Change], backup: Path) -> tuple[list[str], list[str]]:
        """Put back what can be: (what was undone, what cannot be undone). Copies go to backup."""
        undone, lost = [], []
        if not changes:
            return undone, lost
        for change in changes:
            path = change.path
            copy = backup / change.area / path.relative_to(path.anchor)
            if path.exists() or path.is_symlink():
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy, follow_symlinks=False)
            if change.what == "new" or self.is_derived(change):
                path.unlink(missing_ok=True)
                self.seen[change.area].pop(str(path), None)
                undone.append(f"{path} ({change.what}, removed)")
            elif str(path) in self.kept:
                content, mode = self.kept[str(path)]
                path.unlink(missing_ok=True)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
                os.chmod(path, stat.S_IMODE(mode))
                self.seen[change.area][str(path)] = _meta(str(path))
                undone.append(f"{path} ({change.what}, restored)")
            else:
                lost.append(str(change))
        self.violations += 1
        return undone, lost

    def trusted(self, path: Path) -> str:
        """The text a kept file had when the guard was armed: what the loop reads, so a write
        between two scans never reaches it (e.g. program.md); "" if there was none. A symlink
        (the guard keeps no copy of one) is read as it is now."""
        content = self.kept.get(str(path.resolve()))
        if content is not None:
            return content[0].decode(errors="replace")
        return path.read_text(errors="replace") if path.is_symlink() and path.is_file() else ""

    def accept(self, changes: list[Change]) -> None:
        """Take these changes as legitimate (e.g. caches the baseline's own code wrote)."""
        for change in changes:
            meta = _meta(str(change.path))
            if meta is None:
                self.seen[change.area].pop(str(change.path), None)
            else:
                self.seen[change.area][str(change.path)] = meta


@dataclass
class Blame:
    """The changes blamed on one agent turn or run: paths, and whether it was always the only
    one that could have made them."""

    paths: list[str] = field(default_factory=list)
    sole: bool = True

    def add(self, paths: list[str], sole: bool) -> None:
        self.paths += paths
        self.sole = self.sole and sole


class Suspects:
    """Who could have made a change that a scan finds: every agent turn and run under way at some
    moment since the previous scan began (a turn or run that ended since is still a suspect)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: set[str] = set()
        self.window: set[str] = set()

    def begin(self, who: str) -> None:
        with self.lock:
            self.active.add(who)
            self.window.add(who)

    def end(self, who: str) -> None:
        with self.lock:
            self.active.discard(who)  # stays in the window until the next scan

    def take(self) -> set[str]:
        """The suspects of a scan about to begin; the next window starts with those under way."""
        with self.lock:
            found, self.window = self.window, set(self.active)
            return found

    def now(self) -> set[str]:
        """Those under way now or since take() (they may have written during the scan)."""
        with self.lock:
            return set(self.window)


def culprits(suspects: set[str]) -> set[str]:
    """Whom a change is blamed on: the runs among the suspects, else the agents. A run writes
    where it runs, unseen by anyone; an agent turn that merely overlapped a run is not punished
    for what the run did (its own work tree is checked on its own)."""
    runs = {s for s in suspects if s.startswith(RUN_LABEL)}
    return runs or suspects


def lost_message(lost: list[str]) -> str:
    """The one line (for a UserError) for changes the loop cannot put back."""
    return (f"{', '.join(lost[:3])}{' ...' if len(lost) > 3 else ''} changed outside train.py "
            f"and cannot be put back by the loop: reinstall the environment (`uv sync "
            f"--reinstall`) or prepare the data again (`uv run prepare.py --force ...`), then "
            f"run the same command (copies of what was found are in the undo folder)")


def is_own_bytecode(path: Path) -> bool:
    """A .pyc that is exactly what this Python compiles from the source beside it."""
    if path.suffix != ".pyc" or path.parent.name != "__pycache__" or path.is_symlink():
        return False
    stem, *tags = path.name[: -len(".pyc")].split(".")
    source = path.parent.parent / f"{stem}.py"
    try:
        data, text = path.read_bytes(), source.read_bytes()
    except OSError:
        return False
    if data[:4] != importlib.util.MAGIC_NUMBER or len(data) < 16:
        return False
    flags = int.from_bytes(data[4:8], "little")
    if flags & 1:  # hash-based
        if data[8:16] != importlib.util.source_hash(text):
            return False
    else:
        st = source.stat()
        stamp = int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF
        if (int.from_bytes(data[8:12], "little"), int.from_bytes(data[12:16], "little")) != stamp:
            return False
    optimize = int(tags[-1][4:]) if tags and tags[-1].startswith("opt-") else 0
    try:
        code = marshal.loads(data[16:])
        return code == compile(text, str(source), "exec", dont_inherit=True, optimize=optimize)
    except (ValueError, EOFError, TypeError, SyntaxError):
        return False


DATA_FILES = ("data/dataset.json", "tokenizer/meta.json", "tokenizer/tokenizer.pkl",
              "tokenizer/token_bytes.pt")  # what defines the data set and the tokenizer


def data_fingerprint(cache_dir: Path) -> str:
    """A hash of the prepared data set and tokenizer: their defining files' bytes and each
    shard's name and size. Equal on every node that prepared the same source."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        path = cache_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-"))
    shards = sorted((cache_dir / "data").glob("*.parquet")) if (cache_dir / "data").is_dir() else []
    for shard in shards:
        digest.update(f"{shard.name}:{shard.stat().st_size}".encode())
    return digest.hexdigest()

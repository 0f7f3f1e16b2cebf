"""Check what an agent did to the work tree: only train.py may change, and it must compile.

Before the agent runs, the loop takes a Snapshot (HEAD, branch, every dirty or untracked path
with a content hash). Afterwards anything else the agent touched is put back: a tracked file
clean before is restored from HEAD, a file it created is removed. What the human had already
left dirty or untracked (a program.md edit, notes, nohup.out) is never restored or deleted,
because the loop cannot know its old content (and a log file may grow by itself): such a change
is noted in events.log, not "fixed", and does not reject the proposal. A file that is restored or
removed is first copied to a backup directory when the caller gives one: the loop cannot tell an
agent's change from a human's made while the agent worked (or before a killed loop resumed).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from autoresearch.artifacts.checkpoints import RUNS_DIR
from autoresearch.ledger.state import STATE_DIR
from autoresearch.workspace.git import TRAIN, Git
from autoresearch.workspace.tags import RESULTS

# Written by the loop itself while the agent works; never the agent's doing.
LOOP_OWNED = (RESULTS, f"{RUNS_DIR}/", f"{STATE_DIR}/")


@dataclass
class Snapshot:
    head: str
    dirty: dict[str, str]  # path -> content hash of what was dirty/untracked before the agent
    train_py: str  # train.py as the agent was given it


def take_snapshot(git: Git) -> Snapshot:
    return Snapshot(git.head(), git.dirty_paths(), (git.repo / TRAIN).read_text())


def undo_side_effects(git: Git, branch: str, snap: Snapshot, backup: Path | None = None,
                      ) -> tuple[list[str], list[str]]:
    """Undo everything but the train.py edit: (what was undone, what was noticed and left).

    backup: copy each file to backup/<path> before restoring or removing it."""
    undone, noticed = [], []
    if git.current_branch() != branch or git.head() != snap.head:
        # The agent committed or switched branches: the loop owns the branch, so point it back.
        # Files stay as they are; the checks below then see the agent's changes as edits.
        git.reattach(branch, snap.head)
        noticed.append("HEAD had moved: branch put back")
    now = git.dirty_paths()
    for path in sorted(set(now) | set(snap.dirty)):
        if path == TRAIN or path.startswith(LOOP_OWNED) or now.get(path) == snap.dirty.get(path):
            continue
        if path in snap.dirty:
            noticed.append(f"{path} changed (it was already uncommitted: left as is)")
            continue
        _save_copy(git.repo / path, backup / path if backup else None)
        if git.exists_in("HEAD", path):
            git.restore(path)
            undone.append(f"{path} (restored)")
        else:
            git.forget_new(path)
            undone.append(f"{path} (new file, removed)")
    return undone, noticed


def _save_copy(path: Path, copy: Path | None) -> None:
    if copy is not None and (path.is_file() or path.is_symlink()):
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy, follow_symlinks=False)


def check_edit(git: Git, branch: str, snap: Snapshot, backup: Path | None = None,
               ) -> tuple[str | None, list[str]]:
    """(why the edit is rejected or None, notes for the log). train.py itself is left as is."""
    undone, noticed = undo_side_effects(git, branch, snap, backup)
    if undone:
        return f"changed files other than train.py: {', '.join(undone)}", noticed
    path = git.repo / TRAIN
    if not path.is_file():
        return "train.py was deleted", noticed
    text = path.read_text()
    if text == snap.train_py:
        return "train.py is unchanged", noticed
    if text == git.file_at(snap.head):  # e.g. a "fix" that reverts the crashed edit: nothing to try
        return "train.py is unchanged from the best commit", noticed
    try:
        compile(text, TRAIN, "exec")
    except (SyntaxError, ValueError) as e:
        return f"train.py does not compile: {type(e).__name__}: {e}", noticed
    return None, noticed

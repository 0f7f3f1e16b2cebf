"""Re-applying a change onto a newer train.py (or each editable file of a target): git's
three-way merge first, then, where git sees a
conflict only because two edits touch neighbouring lines (two constants a line apart, the common
case for hyperparameter edits), a narrower rule: every block of lines the change edited must
still be in the newer file, unchanged and exactly once, and is replaced there. Anything else
stays a conflict (the agent is asked to port it). A change merges only when every editable file
does."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from autoresearch.workspace.git import Git


@dataclass(frozen=True)
class Carried:
    """A change re-applied onto a newer commit: the merged editable files by path, and their
    commit (None when some file has conflicts: it then holds git's conflict markers)."""

    files: dict[str, str]
    commit: str | None

    @property
    def text(self) -> str:
        """The merged text as the agent reads it: the one editable file's, or each file's under
        its name."""
        if len(self.files) == 1:
            return next(iter(self.files.values()))
        return "".join(f"# {path}\n{text}" for path, text in self.files.items())


def carry(git: Git, base: str, onto: str, change: str, message: str) -> Carried:
    """Re-apply the change base -> change (commits) onto `onto`, every editable file, committed
    there in one commit when all of them merge cleanly. Touches no ref and no work tree, so it
    needs no lock."""
    old, new, changed = git.sources_at(base), git.sources_at(onto), git.sources_at(change)
    merged, conflicts = {}, 0
    for path in git.files:
        merged[path], conflicted = merge(git, old[path], new[path], changed[path])
        conflicts += conflicted
    return Carried(merged, None if conflicts else git.commit_files(onto, merged, message))


def merge(git: Git, base: str, ours: str, theirs: str) -> tuple[str, int]:
    """(merged text, conflicts; 0 = clean) for the change base -> theirs applied onto ours."""
    merged, conflicts = git.merge3(base, ours, theirs)
    if conflicts:
        patched = replace_blocks(base, theirs, ours)
        if patched is not None:
            return patched, 0
    return merged, conflicts


def replace_blocks(base: str, changed: str, target: str) -> str | None:
    """`target` with the edits that turned `base` into `changed`, or None if one cannot be placed:
    an edit that only inserts lines, or whose old lines are not in `target` exactly once."""
    old, new, lines = base.splitlines(True), changed.splitlines(True), target.splitlines(True)
    edits = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        block = old[i1:i2]
        if not block:
            return None
        places = [k for k in range(len(lines) - len(block) + 1) if lines[k:k + len(block)] == block]
        if len(places) != 1:
            return None
        edits.append((places[0], len(block), new[j1:j2]))
    edits.sort(key=lambda edit: edit[0])
    for (start, size, _), (after, _, _) in zip(edits, edits[1:], strict=False):
        if start + size > after:
            return None  # two edits over the same lines of the target
    for start, size, replacement in reversed(edits):
        lines[start:start + size] = replacement
    return "".join(lines)

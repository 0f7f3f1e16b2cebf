"""The work trees the agents edit, one per worker, apart from the user's checkout and each other.

Worker k of tag T edits train.py (or a target's editable files) in .autoresearch/T/trees/<k>, a
git worktree on a detached HEAD. Before each proposal the tree is set to exactly the best commit:
every tracked file as committed, nothing untracked or ignored. Afterwards only the editable files
may differ. Whatever else the agent did is copied to an undo folder and undone: files restored or
removed (ignored ones like __pycache__ included), HEAD put back, branches and tags it created
deleted. The loop owns these trees, so it
may clean them; the user's own checkout is never written by the loop.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from autoresearch.target import listed
from autoresearch.workspace.git import Git

TREES = "trees"  # under .autoresearch/<tag>/
# `git worktree add` (and the prune before it) of one repository must not run twice at once:
# git reads and removes the other one's half-written admin folder
CREATING = threading.Lock()


@dataclass
class Check:
    """What the agent left: why the edit cannot run (None if it can), and what was undone."""

    reason: str | None
    undone: list[str]
    notes: list[str]
    files: dict[str, str] | None  # the edited files' texts by path, None if there are none


class Slot:
    def __init__(self, repo: Git, path: Path, worker: int):
        self.repo = repo  # the user's repository (refs, objects)
        self.path = Path(path).absolute()  # handed to git and to the agent's CLI
        self.worker = worker
        self.git = Git(path)
        self._remove_stale_index_lock()

    def _remove_stale_index_lock(self) -> None:
        """A kill -9 during a git command in this tree leaves its index.lock behind, and every
        later git command there refuses to run. Slots are made while the loop holds the tag's
        lock and before any agent starts, so no git command can be running here: it is stale."""
        dot_git = self.path / ".git"
        if not dot_git.is_file():
            return
        text = dot_git.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            admin = Path(text.removeprefix("gitdir:").strip())
            (admin if admin.is_absolute() else self.path / admin).joinpath("index.lock").unlink(
                missing_ok=True)

    def reset(self, commit: str, backup: Path, keep_edits: bool = False) -> list[str]:
        """Make the tree exactly `commit` (the editable files excepted with keep_edits); copy
        everything that differed to `backup` first. Returns the paths that differed (the
        editable files not listed)."""
        if not self.intact():
            with CREATING:
                if self.path.exists():  # loop-owned; e.g. an agent deleted its .git file
                    _copy(self.path, backup)
                    shutil.rmtree(self.path)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.repo.add_worktree(self.path, commit)
            return []
        editable = self.repo.files
        kept = self.texts() if keep_edits else {}
        differ = [p for p in self.changed_paths(commit) if p not in editable]
        edited = [] if keep_edits else [p for p in editable if (self.path / p).exists()]
        for rel in differ + edited:
            _copy(self.path / rel, backup / rel)
        self.git.run("checkout", "--quiet", "--detach", "--force", commit)
        for rel in self.untracked():
            _remove(self.path / rel, self.path)
        for rel in editable if keep_edits else ():
            if rel in kept:
                (self.path / rel).write_text(kept[rel])
            else:  # the agent deleted it: keep that, so the check can say so
                (self.path / rel).unlink(missing_ok=True)
        return differ

    def texts(self) -> dict[str, str]:
        """The editable files in the tree now, by path (one that is gone is left out)."""
        return {rel: (self.path / rel).read_text() for rel in self.repo.files
                if (self.path / rel).is_file()}

    def intact(self) -> bool:
        """A work tree of its own. Without its .git file, git would walk up to the user's
        checkout (the trees live inside it): never run a git command here unless this holds."""
        if not (self.path / ".git").is_file():
            return False
        top = self.git.run("rev-parse", "--show-toplevel", check=False)
        return bool(top) and Path(top).resolve() == self.path.resolve()

    def changed_paths(self, commit: str = "HEAD") -> list[str]:
        """Tracked files that differ from HEAD or from `commit` (a file the agent committed is
        no different from HEAD, yet gone once the tree is `commit` again), and every untracked
        or ignored path."""
        out = self.git.run_raw("status", "--porcelain=v1", "-z", "--untracked-files=all",
                               "--ignored=matching")
        committed = self.git.run_raw("diff", "--name-only", "-z", commit).split("\0")
        entries, paths, i = out.split("\0"), [p for p in committed if p], 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            if len(entry) < 4:
                continue
            paths.append(entry[3:].rstrip("/"))
            if entry[0] in "RC":  # a rename is followed by its source path
                paths.append(entries[i])
                i += 1
        return sorted(set(paths))

    def untracked(self) -> list[str]:
        out = self.git.run_raw("status", "--porcelain=v1", "-z", "--untracked-files=all",
                               "--ignored=matching")
        return [e[3:].rstrip("/") for e in out.split("\0") if e[:2] in ("??", "!!")]

    def head(self) -> str:
        return self.git.head()

    def vet(self, parent: str, backup: Path, refs_before: dict[str, str]) -> Check:
        """After the agent: undo all but the editable files, then say whether they can run."""
        notes = []
        name = self.repo.editable  # the editable files, as a message names them
        if not self.intact():  # never ask git here: it would answer for the user's checkout
            notes.append("the work tree's .git was gone: tree rebuilt (copy in the undo folder)")
            undone = [".git"] + self.reset(parent, backup)
            return Check(f"changed files other than {name}: .git", undone, notes, None)
        branch = self.git.current_branch()
        if branch or self.head() != parent:
            notes.append(f"HEAD had moved{f' to branch {branch}' if branch else ''}: put back")
        notes += self.drop_new_refs(parent, refs_before, branch)
        undone = self.reset(parent, backup, keep_edits=True)
        if undone:
            return Check(f"changed files other than {name}: {', '.join(undone[:8])}", undone,
                         notes, None)
        files = self.texts()
        if gone := [rel for rel in self.repo.files if rel not in files]:
            return Check(f"{listed(gone)} {'was' if len(gone) == 1 else 'were'} deleted", undone,
                         notes, None)
        if files == self.repo.sources_at(parent):
            return Check(f"{name} {'is' if len(files) == 1 else 'are'} unchanged from the best "
                         f"commit", undone, notes, None)
        for rel, text in files.items():
            try:
                if rel.endswith(".py"):  # a target may edit another language: its run will tell
                    compile(text, rel, "exec")
            except (SyntaxError, ValueError) as e:
                return Check(f"{rel} does not compile: {type(e).__name__}: {e}", undone, notes,
                             None)
        return Check(None, undone, notes, files)

    def drop_new_refs(self, parent: str, before: dict[str, str], branch: str | None) -> list[str]:
        """Delete branches and tags the agent made: new since `before`, and either checked out
        here or built on the agent's parent (a human's new branch elsewhere is left alone)."""
        notes = []
        for ref, sha in self.repo.refs("refs/heads", "refs/tags").items():
            if ref in before or ref.startswith("refs/heads/autoresearch/"):
                continue
            mine = ref == f"refs/heads/{branch}" or self.repo.is_ancestor(parent, sha)
            if mine:
                if ref == f"refs/heads/{branch}":
                    self.git.run("checkout", "--quiet", "--detach", parent)
                self.repo.delete_ref(ref)
                notes.append(f"deleted {ref} (was at {sha[:7]}) that the agent made")
        return notes


def _copy(path: Path, copy: Path) -> None:
    if path.is_symlink() or path.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy, follow_symlinks=False)
    elif path.is_dir():
        shutil.copytree(path, copy, symlinks=True, dirs_exist_ok=True)


def _remove(path: Path, root: Path) -> None:
    """Remove a file or folder, then the folders it leaves empty (up to the tree's root)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    parent = path.parent
    while parent != root and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent

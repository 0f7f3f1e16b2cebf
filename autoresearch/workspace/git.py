"""The git operations of the loop, via the git command line.

Two promises: only `train.py` is ever committed or restored, and files the loop did not create are
never touched (no `reset --hard`, no `clean`): results.tsv, runs/, a half-edited program.md and
anything else untracked or ignored survive every revert. Moving the branch back is an
`update-ref` plus restoring train.py from the best commit.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from autoresearch.errors import UserError

TRAIN = "train.py"
# Fallback identity for machines where git has none configured: the loop must be able to commit.
IDENTITY = ("-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost")


class Git:
    def __init__(self, repo: Path):
        self.repo = Path(repo)

    def _git(self, *args: str, text: bool = True) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["git", *args], cwd=self.repo, capture_output=True, text=text)
        except FileNotFoundError:  # git is not installed, or the repo directory does not exist
            if not self.repo.is_dir():
                raise UserError(f"{self.repo} is not a directory: pass the autoresearch checkout "
                                "with --repo") from None
            raise UserError("git not found on PATH: install git") from None
        except NotADirectoryError:
            raise UserError(f"{self.repo} is not a directory: pass the autoresearch checkout "
                            "with --repo") from None

    def run(self, *args: str, check: bool = True) -> str:
        """Run git in the repo; a failure becomes a UserError quoting git's own message."""
        proc = self._git(*args)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise UserError(f"git {' '.join(args)} failed: {detail[-1] if detail else 'no output'}")
        return proc.stdout.strip()

    def ok(self, *args: str) -> bool:
        return self._git(*args, text=False).returncode == 0

    # ---- where we are

    def check_repo(self) -> None:
        if not self.ok("rev-parse", "--is-inside-work-tree"):
            raise UserError(f"{self.repo.resolve()} is not a git repository: run the loop from "
                            "the autoresearch checkout (git clone ..., cd autoresearch)")
        top = Path(self.run("rev-parse", "--show-toplevel")).resolve()
        if top != self.repo.resolve():
            raise UserError(f"run the loop from the repository root {top}, not {self.repo}")
        if not self.ok("rev-parse", "--verify", "-q", "HEAD"):
            raise UserError("the repository has no commit yet: commit train.py and the harness")

    def current_branch(self) -> str | None:
        """The checked-out branch name, or None for a detached HEAD."""
        name = self.run("symbolic-ref", "-q", "--short", "HEAD", check=False)
        return name or None

    def head(self) -> str:
        return self.run("rev-parse", "HEAD")

    def resolve(self, rev: str) -> str | None:
        """Full sha of a commit-ish, or None if it does not name a commit."""
        out = self.run("rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False)
        return out or None

    def branch_exists(self, branch: str) -> bool:
        return self.ok("show-ref", "--verify", "-q", f"refs/heads/{branch}")

    def parent(self, commit: str) -> str | None:
        return self.resolve(f"{commit}^")

    def file_at(self, commit: str, path: str = TRAIN) -> str:
        return self.run_raw("show", f"{commit}:{path}")

    def run_raw(self, *args: str) -> str:
        """Like run() but keeps the output byte-exact (no strip): file contents."""
        proc = self._git(*args)
        if proc.returncode != 0:
            raise UserError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def exists_in(self, commit: str, path: str) -> bool:
        return self.ok("cat-file", "-e", f"{commit}:{path}")

    # ---- the work tree

    def dirty_paths(self) -> dict[str, str]:
        """Every path git reports as changed or untracked (not ignored), with a content hash.

        Taken before the agent runs, so that afterwards the loop can tell what the agent did
        from what the human had already left there.
        """
        out = self.run_raw("status", "--porcelain=v1", "-z", "--untracked-files=all")
        paths: dict[str, str] = {}
        entries = out.split("\0")
        i = 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            if len(entry) < 4:
                continue
            if entry[0] in "RC":  # a rename is followed by its source path: changed too
                paths[entries[i]] = file_hash(self.repo / entries[i])
                i += 1
            paths[entry[3:]] = file_hash(self.repo / entry[3:])
        return paths

    def is_dirty(self, path: str) -> bool:
        return bool(self.run("status", "--porcelain", "--", path))

    def restore(self, path: str, commit: str = "HEAD") -> None:
        """Put `path` back as it is in `commit`, in the index and the work tree."""
        self.run("checkout", commit, "--", path)

    def forget_new(self, path: str) -> None:
        """Remove a file the agent created: out of the index (if it staged it) and off disk."""
        self.run("rm", "-q", "--cached", "--ignore-unmatch", "--", path)
        target = self.repo / path
        if target.is_file() or target.is_symlink():
            target.unlink()

    # ---- moving things

    def create_branch(self, branch: str) -> None:
        """Create `branch` at HEAD and switch to it (the work tree is left as it is)."""
        self.run("checkout", "-q", "-b", branch)

    def switch(self, branch: str) -> None:
        self.run("checkout", "-q", branch)

    def commit_train(self, message: str) -> str:
        """Commit train.py alone (whatever else is staged stays out) and return the new sha."""
        identity = () if self.run("config", "user.email", check=False) else IDENTITY
        self.run(*identity, "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify",
                 "-m", message, "--only", "--", TRAIN)
        return self.head()

    def set_ref(self, ref: str, commit: str) -> None:
        self.run("update-ref", ref, commit)

    def reattach(self, branch: str, commit: str) -> None:
        """Point HEAD at `branch` and `branch` at `commit`, leaving every file as it is.

        Used when an agent committed or switched branches by itself: the loop owns the branch.
        """
        self.run("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        self.set_ref(f"refs/heads/{branch}", commit)

    def move_back(self, branch: str, best: str) -> None:
        """Branch back to `best` and train.py as in `best`; nothing else in the tree changes.

        The equivalent of `git reset --soft best && git checkout best -- train.py`.
        """
        self.set_ref(f"refs/heads/{branch}", best)
        self.restore(TRAIN, best)

    def show(self, commit: str) -> str:
        """What a commit changed in train.py, as a patch with its header."""
        return self.run_raw("show", "--stat", "--patch", "--format=fuller", commit, "--", TRAIN)


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes; 'missing' for a deleted file, 'dir' for a directory."""
    if not path.exists():
        return "missing"
    if path.is_dir():
        return "dir"
    return hashlib.sha256(path.read_bytes()).hexdigest()

"""The git operations of the loop, via the git command line.

Promises: only the editable files (`train.py`, or a target's) are ever committed, and the user's
checkout is never touched: agents edit them in work trees of their own (workspace/slots.py),
commits are made from a temporary index without moving any HEAD, and the tag's branch moves by
compare-and-swap `update-ref`. No `reset --hard`, no `clean`, no checkout in the user's work tree.

Every git command runs with hooks and fsmonitor off: an agent that planted a hook or a config
entry must not get its code run by the loop's own git calls.
"""

from __future__ import annotations

import hashlib
import locale
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.redact import redact
from autoresearch.target import listed

TRAIN = "train.py"
# Fallback identity for machines where git has none configured: the loop must be able to commit.
IDENTITY = ("-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost")
SAFE = ("-c", f"core.hooksPath={os.devnull}", "-c", "core.fsmonitor=false",
        "-c", "core.autocrlf=false", "-c", "commit.gpgsign=false")
LOCKED = re.compile(r"Unable to create '([^']+\.lock)': File exists")
# a commit's full id (SHA-1 or SHA-256): git reads it as an object, never as a ref's name
FULL_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class Git:
    def __init__(self, repo: Path, editable: str | Iterable[str] = TRAIN):
        # absolute, once: git runs in it, and every path made from it is handed to git or to a
        # child process started elsewhere, which would resolve a relative one again
        self.repo = Path(repo).absolute()
        # the files agents edit, in the target's order (train.py by default)
        self.files: tuple[str, ...] = (editable,) if isinstance(editable, str) \
            else tuple(editable)
        # what commits hold, read from git once: a commit never changes, so (its full id, a
        # path) names the same bytes for good. Keyed by blob id, a file that many commits share
        # (the fixed harness) is held once. Plain dict steps, safe for the workers' threads.
        self._blob_ids: dict[tuple[str, str], str] = {}
        self._blobs: dict[str, bytes] = {}

    @property
    def editable(self) -> str:
        """The editable files as a message names them: `train.py`, `model.py and features.py`."""
        return listed(self.files)

    def _git(self, *args: str, text: bool = True, env: dict | None = None,
             stdin: str | bytes | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["git", *SAFE, *args], cwd=self.repo, capture_output=True,
                                  text=text, env=env, input=stdin)
        except FileNotFoundError:  # git is not installed, or the repo directory does not exist
            if not self.repo.is_dir():
                raise UserError(f"{self.repo} is not a directory: pass the autoresearch checkout "
                                "with --repo") from None
            raise UserError("git not found on PATH: install git") from None
        except NotADirectoryError:
            raise UserError(f"{self.repo} is not a directory: pass the autoresearch checkout "
                            "with --repo") from None

    def run(self, *args: str, check: bool = True, env: dict | None = None,
            stdin: str | None = None) -> str:
        """Run git in the repo; a failure becomes a UserError quoting git's own message."""
        proc = self._git(*args, env=env, stdin=stdin)
        if check and proc.returncode != 0:
            raise failure(args, proc.stderr or proc.stdout)
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

    def file_at(self, commit: str, path: str | None = None) -> str:
        """A file's text at a commit (the first editable file by default)."""
        path = path or self.files[0]
        return as_text(self.blobs_at(commit, (path,))[path])

    def sources_at(self, commit: str) -> dict[str, str]:
        """The text of every editable file at a commit, by path, in the target's order: the
        program a commit holds."""
        return {path: as_text(data) for path, data in self.blobs_at(commit, self.files).items()}

    def blob_at(self, commit: str, path: str) -> bytes:
        """A file's bytes at a commit: a fixed file of a target may be binary (reference.npz)."""
        return self.blobs_at(commit, (path,))[path]

    def blobs_at(self, commit: str, paths: Iterable[str]) -> dict[str, bytes]:
        """Files' bytes at a commit, by path in the order given. Each is read from git once per
        commit, all missing ones with one git call; a name (HEAD, a branch, a short id) is
        resolved to its commit first, as a ref moves and its name must never be cached."""
        paths = tuple(paths)
        sha = self.commit_id(commit)
        missing = [path for path in paths if (sha, path) not in self._blob_ids]
        if missing:
            self._read_blobs(sha, missing)
        return {path: self._blobs[self._blob_ids[sha, path]] for path in paths}

    def commit_id(self, rev: str) -> str:
        """The full id of the commit `rev` names (a full id as it is, without asking git);
        UserError when it names none."""
        if FULL_ID.fullmatch(rev):
            return rev
        sha = self.resolve(rev)
        if sha is None:
            raise UserError(f"git: {rev} does not name a commit")
        return sha

    def _read_blobs(self, sha: str, paths: list[str]) -> None:
        """Read `paths` at commit `sha` into the caches with one `git cat-file --batch`; a path
        the commit lacks (or that is no file) is a UserError."""
        request = "".join(f"{sha}:{path}\n" for path in paths).encode()
        proc = self._git("cat-file", "--batch", text=False, stdin=request)
        if proc.returncode != 0:
            raise failure(("cat-file", "--batch"), proc.stderr.decode(errors="replace"))
        out, at = proc.stdout, 0
        for path in paths:
            end = out.index(b"\n", at)
            header = out[at:end].decode(errors="replace").split()
            if len(header) != 3 or header[1] != "blob":  # "<name> missing": no such file
                raise UserError(f"git: {path} is not a file in commit {sha[:7]}")
            oid, size = header[0], int(header[2])
            self._blobs.setdefault(oid, out[end + 1:end + 1 + size])
            self._blob_ids[sha, path] = oid
            at = end + 1 + size + 1  # the content ends with a newline of the protocol

    def run_raw(self, *args: str) -> str:
        """Like run() but keeps the output byte-exact (no strip): file contents."""
        proc = self._git(*args)
        if proc.returncode != 0:
            raise failure(args, proc.stderr)
        return proc.stdout

    def exists_in(self, commit: str, path: str) -> bool:
        return self.ok("cat-file", "-e", f"{commit}:{path}")

    # ---- the work tree

    def is_dirty(self, *paths: str) -> bool:
        """Whether any of `paths` differs from HEAD in the work tree (or is untracked)."""
        return bool(self.run("status", "--porcelain", "--", *paths))

    # ---- commits and refs (no HEAD moves)

    def create_branch(self, branch: str, commit: str) -> None:
        """Create `branch` at `commit` without checking it out."""
        self.run("branch", "--no-track", branch, commit)

    def identity(self) -> tuple[str, ...]:
        return () if self.run("config", "user.email", check=False) else IDENTITY

    def commit_files(self, parent: str, files: Mapping[str, str], message: str) -> str:
        """A new commit: `parent`'s tree with each path of `files` set to its text, all in one
        commit. Nothing is checked out or moved (a temporary index), so any number of workers
        can commit at once."""
        with tempfile.TemporaryDirectory(prefix="autoresearch-index-") as tmp:
            env = dict(os.environ, GIT_INDEX_FILE=str(Path(tmp) / "index"))
            self.run("read-tree", parent, env=env)
            for path, text in files.items():
                blob = self.run("hash-object", "-w", "--stdin", stdin=text)
                self.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}",
                         env=env)
            tree = self.run("write-tree", env=env)
        return self.run(*self.identity(), "commit-tree", tree, "-p", parent, "-m", message)

    def merge3(self, base: str, ours: str, theirs: str) -> tuple[str, int]:
        """Three-way merge of three texts: (merged text, number of conflicts; 0 = clean)."""
        with tempfile.TemporaryDirectory(prefix="autoresearch-merge-") as tmp:
            files = []
            for name, text in (("best", ours), ("parent", base), ("change", theirs)):
                path = Path(tmp) / name
                path.write_text(text)
                files.append(str(path))
            proc = self._git("merge-file", "-p", "-L", "current best", "-L", "its parent",
                             "-L", "the change", *files)
        if proc.returncode < 0 or proc.returncode > 127:
            raise failure(("merge-file",), proc.stderr)
        return proc.stdout, proc.returncode

    def set_ref(self, ref: str, commit: str, old: str | None = None) -> None:
        """Point `ref` at `commit`; with `old`, only if it still points there (else UserError)."""
        self.run("update-ref", ref, commit, *([old] if old else []))

    def delete_ref(self, ref: str) -> None:
        self.run("update-ref", "-d", ref)

    def refs(self, *patterns: str) -> dict[str, str]:
        """{ref name: sha} for refs matching `patterns` (e.g. "refs/heads")."""
        out = self.run("for-each-ref", "--format=%(refname) %(objectname)", *patterns)
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def hypothesis(self, commit: str) -> str:
        """The `Hypothesis: ...` line the loop wrote into a commit's message, or ""."""
        message = self.run("log", "-1", "--format=%B", commit, check=False)
        return next((line.split(":", 1)[1].strip() for line in message.splitlines()
                     if line.startswith("Hypothesis:")), "")

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        return self.ok("merge-base", "--is-ancestor", ancestor, commit)

    def show(self, commit: str) -> str:
        """What a commit changed in the editable files, as a patch with its header."""
        return self.run_raw("show", "--stat", "--patch", "--format=fuller", commit, "--",
                            *self.files)

    def diff(self, old: str, new: str) -> str:
        """How the editable files differ between two commits, as one patch."""
        return self.run_raw("diff", old, new, "--", *self.files)

    # ---- work trees of the loop's own

    def add_worktree(self, path: Path, commit: str) -> None:
        """A detached work tree at `path`: absolute, as git resolves it against the repo."""
        self.run("worktree", "prune")  # forget trees whose folders were deleted by hand
        self.run("worktree", "add", "--force", "--detach", str(Path(path).absolute()), commit)


def find_root(path: Path) -> Path:
    """The root (git's top level) of the repository `path` lies in, absolute, so that every
    command finds the same one from any folder of it; `path` itself, absolute, when it is no
    git work tree (review commands read a copied results folder too)."""
    path = Path(path).absolute()
    if not path.is_dir():
        return path  # the command says what is wrong with it
    top = Git(path).run("rev-parse", "--show-toplevel", check=False)
    return Path(top) if top else path


def failure(args: tuple[str, ...], output: str) -> UserError:
    """A failed git command as one line: git's own last line, or what to do about a lock."""
    match = LOCKED.search(output or "")
    if match:
        return UserError(f"{match.group(1)} exists: another git command is running in this "
                         f"repository, or one crashed. If none is running, remove it "
                         f"(rm {match.group(1)}) and run again")
    detail = (output or "").strip().splitlines()
    return UserError(f"git {' '.join(args)} failed: {detail[-1] if detail else 'no output'}")


def as_text(data: bytes) -> str:
    """A file's bytes as text, the way git's output reads as text: the locale's encoding and
    universal newlines (what the loop read through `git show` before, kept exactly)."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n") \
        .replace("\r", "\n")


def text_hash(data: str | bytes) -> str:
    """sha256 of a file's content, text (as UTF-8) or bytes: the same for the same file."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def commit_message(description: str, hypothesis: str, what: str) -> str:
    """The message of a commit the loop makes: the change, its hypothesis, and what made it
    (`what`: "tag, experiment, worker 1", "port of #7"); secrets redacted, as a push publishes
    it."""
    body = f"\n\nHypothesis: {hypothesis}" if hypothesis else ""
    return redact(f"{description}{body}\n\nautoresearch ({what})")

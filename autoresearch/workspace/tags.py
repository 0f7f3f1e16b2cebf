"""Open a tag: start a new run on branch autoresearch/<tag>, or check that an old one can resume.

Every state the loop cannot continue from safely gets a one-line error saying what to do, never
a guess: not a git repo, detached HEAD, uncommitted train.py, a branch without loop state (or
loop state without its branch), a branch moved by hand, a changed harness file.
"""

from __future__ import annotations

import re
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.ledger.results import COLUMNS
from autoresearch.ledger.state import FIXED_FILES, State, load_state, now_iso, save_state
from autoresearch.workspace.git import TRAIN, Git, file_hash

BRANCH_PREFIX = "autoresearch/"
RESULTS = "results.tsv"
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Journal phases in which train.py is dirty by design (the loop cleans it up on resume).
DIRTY_PHASES = ("proposing", "committing", "recording")


def branch_for(tag: str) -> str:
    return BRANCH_PREFIX + tag


def tried_ref(tag: str, n: int) -> str:
    """Where a discarded or crashed experiment's commit is kept, so no tried diff is ever lost."""
    return f"refs/autoresearch/{tag}/tried/{n}"


def check_tag(tag: str) -> None:
    if not TAG_RE.match(tag) or tag.endswith((".", ".lock")):
        raise UserError(f"bad --tag {tag!r}: use letters, digits, '.', '_' or '-' (e.g. nov21)")


def check_results_file(path: Path) -> None:
    """Rows are appended under the existing header: it must be ours, not another tool's."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path.name} is unreadable ({e}): move it aside, then run again") from None
    if header != COLUMNS:
        raise UserError(f"{path.name} was written by another tool or version (columns "
                        f"{', '.join(header[:6])}...): move it aside (`mv {path.name} "
                        f"results_old.tsv`), then run again")


def fixed_hashes(repo: Path) -> dict[str, str]:
    return {name: file_hash(repo / name) for name in FIXED_FILES}


def check_fixed_files(repo: Path, state: State) -> None:
    """The harness must not change during a tag: numbers before and after would not compare."""
    now = fixed_hashes(repo)
    changed = [name for name in FIXED_FILES if now[name] != state.fixed_sha256.get(name)]
    if changed:
        files = " ".join(changed)
        raise UserError(f"{', '.join(changed)} changed since tag {state.tag} started (sha256 "
                        f"differs): the harness is fixed for a run. Restore it with `git checkout "
                        f"{state.base_commit[:7]} -- {files}`, or start a new --tag")


def open_tag(git: Git, tag: str) -> State:
    """The state of `tag`, new or resumed, with HEAD on its branch; raises UserError if unusable.

    The harness hashes are checked by the loop after it has undone an interrupted agent's edits
    (which may include the harness) and before every run.
    """
    git.check_repo()
    check_tag(tag)
    check_results_file(git.repo / RESULTS)
    state = load_state(git.repo, tag)
    return start_new(git, tag) if state is None else check_resume(git, state)


def start_new(git: Git, tag: str) -> State:
    branch = branch_for(tag)
    if git.branch_exists(branch):
        raise UserError(f"branch {branch} exists but has no loop state (.autoresearch/{tag}/"
                        f"state.json): it belongs to another run or clone. Pick another --tag, "
                        f"or delete it with `git branch -D {branch}`")
    if git.current_branch() is None:
        raise UserError("HEAD is detached: check out the branch to start from "
                        "(e.g. `git checkout main`), then run again")
    if not (git.repo / TRAIN).is_file():
        raise UserError(f"no train.py in {git.repo.resolve()}: run the loop from the repo root")
    for path in (TRAIN, *FIXED_FILES):
        if git.is_dirty(path):
            raise UserError(dirty_message(path))
    base = git.head()
    git.create_branch(branch)
    state = State(tag=tag, branch=branch, base_commit=base, created_at=now_iso(),
                  fixed_sha256=fixed_hashes(git.repo))
    save_state(git.repo, state)
    return state


def check_resume(git: Git, state: State) -> State:
    branch = state.branch
    if not git.branch_exists(branch):
        best = (state.best_commit or state.base_commit)[:7]
        raise UserError(f".autoresearch/{state.tag}/state.json exists but branch {branch} does "
                        f"not: restore it with `git branch {branch} {best}`, or use a new --tag")
    phase = (state.inflight or {}).get("phase")
    if git.current_branch() != branch:
        if git.is_dirty(TRAIN):
            raise UserError(dirty_message(TRAIN))
        git.switch(branch)
    elif phase not in DIRTY_PHASES and git.is_dirty(TRAIN):
        raise UserError(dirty_message(TRAIN))
    head = git.head()
    expected = expected_head(state)
    if expected is not None and head != expected and not moved_by_loop(git, state, head):
        raise UserError(f"branch {branch} is at {head[:7]} but the loop left it at "
                        f"{expected[:7]}: it was moved outside the loop. Put it back with "
                        f"`git update-ref refs/heads/{branch} {expected}` (commits stay "
                        f"reachable by their sha), or start a new --tag")
    return state


def expected_head(state: State) -> str | None:
    """Where the branch must be for the journal's phase; None when any position is explained."""
    job = state.inflight
    if job is None:
        return state.best_commit or state.base_commit
    if job["phase"] == "proposing":
        return None  # the agent may have committed by itself; the loop undoes it on resume
    if job["phase"] == "running":
        return job["commit"]
    return job["parent"]  # committing (before the commit) or recording (after the revert)


def moved_by_loop(git: Git, state: State, head: str) -> bool:
    """The other position a phase explains: the new commit (committing) or not yet reverted."""
    job = state.inflight or {}
    if job.get("phase") == "committing":
        return git.parent(head) == job["parent"]
    if job.get("phase") == "recording":
        return head == job["commit"]
    return False


def dirty_message(path: str) -> str:
    if path == TRAIN:
        return ("train.py has uncommitted changes: commit them (`git commit train.py -m ...`) or "
                "drop them (`git checkout train.py`), then run again")
    return (f"{path} has uncommitted changes: the harness must be committed before a run "
            f"(`git commit {path} -m ...` or `git checkout {path}`)")

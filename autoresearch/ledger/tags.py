"""Open a tag: start a new run on branch autoresearch/<tag>, or check that an old one can resume.

The branch is created at the current commit and never checked out: agents work in work trees of
the loop's own, so the user's checkout stays as it is (branch, files, uncommitted edits).

Every state the loop cannot continue from safely gets a one-line error saying what to do, never
a guess: not a git repo, uncommitted changes to the code the baseline would run, a branch without
loop state (or loop state without its branch), a branch moved by hand, changed prepared data.
"""

from __future__ import annotations

import re
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.ledger.results import columns, upgrade_header
from autoresearch.ledger.state import State, load_state, now_iso, save_state
from autoresearch.model import Phase
from autoresearch.names import RESULTS
from autoresearch.target import DEFAULT, Metric, Target
from autoresearch.workspace.git import TRAIN, Git, text_hash

BRANCH_PREFIX = "autoresearch/"
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def branch_for(tag: str) -> str:
    return BRANCH_PREFIX + tag


def tried_ref(tag: str, n: int) -> str:
    """Where a discarded or crashed experiment's commit is kept, so no tried diff is ever lost."""
    return f"refs/autoresearch/{tag}/tried/{n}"


def check_tag(tag: str) -> None:
    if not TAG_RE.match(tag) or tag.endswith((".", ".lock")):
        raise UserError(f"bad --tag {tag!r}: use letters, digits, '.', '_' or '-' (e.g. nov21)")


def check_results_file(path: Path, metric: Metric = DEFAULT.metric) -> None:
    """Rows are appended under the existing header: it must be ours for this metric (an older
    version of ours is upgraded in place), not another tool's or another target's."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path.name} is unreadable ({e}): move it aside, then run again") from None
    if header == columns(metric) or upgrade_header(path, metric):
        return
    raise UserError(f"{path.name} was written by another tool (columns "
                    f"{', '.join(header[:6])}...): move it aside (`mv {path.name} "
                    f"results_old.tsv`), then run again")


def fixed_hashes(git: Git, commit: str, fixed: tuple[str, ...]) -> dict[str, str]:
    return {name: text_hash(data) for name, data in git.blobs_at(commit, fixed).items()}


def run_files(git: Git, commit: str, state: State) -> dict[str, str | bytes]:
    """The files a run needs: the editable files of the commit and the fixed harness (the files
    the tag guards, as bytes: they may be binary), which must not have changed since the tag
    started (numbers before and after would not compare)."""
    files: dict[str, str | bytes] = dict(git.sources_at(commit))
    files.update(git.blobs_at(commit, state.fixed_sha256))
    changed = [n for n, sha in state.fixed_sha256.items() if text_hash(files[n]) != sha]
    if changed:
        raise UserError(f"{', '.join(changed)} changed since tag {state.tag} started (sha256 "
                        f"differs): the harness is fixed for a run; start a new --tag")
    return files


def open_tag(git: Git, tag: str, data_sha256: str, target: Target = DEFAULT) -> State:
    """The state of `tag`, new or resumed; raises UserError if it is unusable. A new tag
    remembers the target's fixed files by hash (state.fixed_sha256): those are guarded."""
    git.check_repo()
    check_tag(tag)
    check_results_file(git.repo / RESULTS, target.metric)
    state = load_state(git.repo, tag)
    if state is None:
        return start_new(git, tag, data_sha256, target.fixed)
    check_resume(git, state, data_sha256, target.fixed)
    return state


def start_new(git: Git, tag: str, data_sha256: str, fixed: tuple[str, ...]) -> State:
    branch = branch_for(tag)
    if git.branch_exists(branch):
        raise UserError(f"branch {branch} exists but has no loop state (.autoresearch/{tag}/"
                        f"state.json): it belongs to another run or clone. Pick another --tag, "
                        f"or delete it with `git branch -D {branch}`")
    for name in git.files:
        if not (git.repo / name).is_file():
            raise UserError(f"no {name} in {git.repo.resolve()}: run the loop from the repo root")
    for path in (*git.files, *fixed):
        if git.is_dirty(path):
            raise UserError(dirty_message(path, git.files))
    base = git.head()
    missing = [name for name in (*git.files, *fixed) if not git.exists_in(base, name)]
    if missing:
        raise UserError(f"{', '.join(missing)} not committed: the harness must be committed "
                        f"before a run (`git add {' '.join(missing)} && git commit`)")
    git.create_branch(branch, base)
    state = State(tag=tag, branch=branch, base_commit=base, created_at=now_iso(),
                  fixed_sha256=fixed_hashes(git, base, fixed), data_sha256=data_sha256)
    save_state(git.repo, state)
    return state


def check_resume(git: Git, state: State, data_sha256: str, fixed: tuple[str, ...]) -> None:
    branch = state.branch
    if not git.branch_exists(branch):
        best = (state.best_commit or state.base_commit)[:7]
        raise UserError(f".autoresearch/{state.tag}/state.json exists but branch {branch} does "
                        f"not: restore it with `git branch {branch} {best}`, or use a new --tag")
    head = git.resolve(f"refs/heads/{branch}")
    expected = state.best_commit or state.base_commit
    recording = {j.decision.keep for j in state.jobs
                 if j.phase == Phase.RECORDING and j.decision and j.decision.keep}
    if head != expected and head not in recording:
        raise UserError(f"branch {branch} is at {head[:7]} but the loop left it at "
                        f"{expected[:7]}: it was moved outside the loop. Put it back with "
                        f"`git update-ref refs/heads/{branch} {expected}` (commits stay "
                        f"reachable by their sha), or start a new --tag")
    unguarded = [name for name in fixed if name not in state.fixed_sha256]
    if unguarded:  # a tag from before the harness grew: its commits may lack the file
        raise UserError(f"tag {state.tag} started before {', '.join(unguarded)} joined the "
                        f"fixed harness: its runs would not compare with new ones. Start a new "
                        f"--tag")
    if state.data_sha256 and data_sha256 != state.data_sha256:
        raise UserError(f"the prepared data or tokenizer changed since tag {state.tag} started: "
                        f"numbers would not compare. Prepare the same data again, or start a new "
                        f"--tag")


def unrun_edits_note(state: State, editable: str = TRAIN) -> str:
    """What a resumed tag does with uncommitted edits of the checkout's editable file: nothing."""
    return (f"note: uncommitted changes to {editable}, which tag {state.tag} does not run: it "
            f"resumes from its branch {state.branch}. To try them, commit them and start a new "
            f"--tag")


def dirty_message(path: str, editable: tuple[str, ...] = (TRAIN,)) -> str:
    if path in editable:
        return (f"{path} has uncommitted changes, which the baseline would not run: commit "
                f"them (`git commit {path} -m ...`) or drop them (`git checkout {path}`), "
                "then run again")
    return (f"{path} has uncommitted changes: the harness must be committed before a run "
            f"(`git commit {path} -m ...` or `git checkout {path}`)")

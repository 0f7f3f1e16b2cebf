"""Run directories and the weights kept in them.

Each run lives in `runs/<tag>/<n>-<commit7>/` (run.log, train.py, metrics.json; for kept runs
also model.pt, config.json, sample_output.txt); runs of older versions in `runs/<n>-<commit7>/`
are still found. This module alone knows that layout: the loop names a new run's folder with
run_path(), and every reader finds runs with run_dirs() / run_dir_for() / resolve_run(). Weights
are the only big files, so pruning deletes model.pt alone: a pruned run still tells its whole
story, it just cannot be sampled any more.
"""

from __future__ import annotations

import re
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.model import Row, is_measured

RUNS_DIR = "runs"
WEIGHTS = "model.pt"
RUN_NAME = re.compile(r"^(\d+)-([0-9a-f]{4,40})$")  # <n>-<commit7>
COMMIT_PREFIX = re.compile(r"^[0-9a-f]{4,40}$")


def run_path(tag: str, n: int, commit: str) -> str:
    """Where run `n` of `tag` (code `commit`) lives, relative to the repo root (results.tsv's
    run_dir cell)."""
    return f"{RUNS_DIR}/{tag}/{n:04d}-{commit[:7]}"


def repo_of(run_dir: Path) -> Path:
    """The repository root a run directory belongs to (either layout)."""
    run_dir = run_dir.resolve()
    up = run_dir.parent if run_dir.parent.name == RUNS_DIR else run_dir.parent.parent
    return up.parent


def run_number(run_dir: Path) -> int:
    return int(RUN_NAME.match(run_dir.name).group(1))


def _is_run(path: Path) -> bool:
    return path.is_dir() and RUN_NAME.match(path.name) is not None


def run_dirs(repo: Path) -> list[Path]:
    """All run directories of the repo, every tag's and the old flat ones (resolved paths, so
    they compare equal), by run number, then tag."""
    root = (repo / RUNS_DIR).resolve()
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if _is_run(path):
            found.append(path)
        elif path.is_dir() and not path.is_symlink():
            found += [p for p in path.iterdir() if _is_run(p)]
    return sorted(found, key=lambda p: (run_number(p), p.parent.name, p.name))


def _inside_runs(repo: Path, path: Path) -> bool:
    """A run directory in one of the two places runs live (the ledger is data, and data never
    gets to name arbitrary paths for the dashboard to read)."""
    root = (repo / RUNS_DIR).resolve()
    return _is_run(path) and root in (path.parent, path.parent.parent)


def run_dir_for(repo: Path, row: Row) -> Path | None:
    """The run directory of a results.tsv row, or None if it has none (e.g. another tool's file).

    A run_dir cell is honoured only if it names a run directory inside runs/; a row without one
    is looked up by commit and number, in its tag's folder first.
    """
    if row.run_dir:
        path = (repo / row.run_dir).resolve()
        return path if _inside_runs(repo, path) else None
    matches = [p for p in run_dirs(repo)
               if RUN_NAME.match(p.name).group(2) == row.commit[:7]
               and (row.experiment is None or run_number(p) == row.experiment)]
    mine = [p for p in matches if row.tag and p.parent.name == row.tag]
    return (mine or matches or [None])[0]


def resolve_run(repo: Path, ref: str) -> Path:
    """Find a run from what a user types: a run dir path or name (`0007-abc1234`, or
    `<tag>/0007-abc1234` where tags share numbers), an experiment number, a commit."""
    path = Path(ref)
    if path.is_dir() and (path / "train.py").is_file():
        return path
    by_name = (repo / RUNS_DIR / ref).resolve()
    if _inside_runs(repo, by_name):
        return by_name
    runs = run_dirs(repo)
    matches = []
    if ref.isdigit():
        matches = [p for p in runs if run_number(p) == int(ref)]
    if not matches and RUN_NAME.match(ref):
        matches = [p for p in runs if p.name == ref]
    if not matches and COMMIT_PREFIX.match(ref):
        matches = [p for p in runs if RUN_NAME.match(p.name).group(2).startswith(ref[:7])]
    if not matches:
        raise UserError(f"no run matches {ref!r}: give a run dir (runs/<tag>/0007-abc1234), an "
                        f"experiment number or a commit prefix ({len(runs)} runs in {repo}/runs)")
    if len(matches) > 1:
        root = (repo / RUNS_DIR).resolve()
        names = ", ".join(str(p.relative_to(root)) for p in matches[:6])
        raise UserError(f"{ref!r} matches several runs ({names}): give one of these names instead")
    return matches[0]


REPLICA_KINDS = ("noise", "control", "confirm")  # runs again of code that has its own row


def prune_checkpoints(repo: Path, rows: list[Row], keep_best: int) -> list[Path]:
    """Delete model.pt of every run in `rows` except those of the newest `keep_best` keeps.

    The kept line only ever improves (each keep beat the best before it, by its measured gain), so
    its newest keeps are its best, and the newest is the current best, whose weights held-out
    verification scores as a parent (verify/private.py). A keep's own run holds its weights; its
    confirmation runs' copies go. Only run directories named by `rows` are touched (never another
    tag's), and only their model.pt: logs, train.py copies, metrics, configs and samples stay.
    Returns the deleted paths.
    """
    if keep_best < 0:
        raise ValueError(f"keep_best must be >= 0, got {keep_best}")
    keeps = [r for r in rows if r.status == "keep" and is_measured(r)
             and r.kind not in REPLICA_KINDS]
    protected = {run_dir_for(repo, r) for r in keeps[::-1][:keep_best]}
    deleted = []
    for row in rows:
        path = run_dir_for(repo, row)
        if path is None or path in protected:
            continue
        weights = path / WEIGHTS
        try:  # workers prune after each decision, at once: another may have deleted it first
            weights.unlink()
        except FileNotFoundError:
            continue
        deleted.append(weights)
    return deleted

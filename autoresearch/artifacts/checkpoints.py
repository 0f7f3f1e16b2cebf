"""Run directories and the weights kept in them.

Each run lives in `runs/<n>-<commit7>/` (run.log, train.py, metrics.json; for kept runs also
model.pt, config.json, sample_output.txt). Weights are the only big files, so pruning deletes
model.pt alone: a pruned run still tells its whole story, it just cannot be sampled any more.
"""

from __future__ import annotations

import re
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.ledger.results import Row
from autoresearch.review.report import is_measured

RUNS_DIR = "runs"
WEIGHTS = "model.pt"
RUN_NAME = re.compile(r"^(\d+)-([0-9a-f]{4,40})$")  # <n>-<commit7>
COMMIT_PREFIX = re.compile(r"^[0-9a-f]{4,40}$")


def run_dirs(repo: Path) -> list[Path]:
    """All run directories of the repo (resolved paths, so they compare equal), in order."""
    root = (repo / RUNS_DIR).resolve()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and RUN_NAME.match(p.name)]
    return sorted(found, key=lambda p: (int(RUN_NAME.match(p.name).group(1)), p.name))


def run_dir_for(repo: Path, row: Row) -> Path | None:
    """The run directory of a results.tsv row, or None if it has none (e.g. another tool's file).

    A run_dir cell is honoured only if it points inside runs/: the ledger is data, and data never
    gets to name arbitrary paths for the dashboard to read.
    """
    root = (repo / RUNS_DIR).resolve()
    if row.run_dir:
        path = (repo / row.run_dir).resolve()
        return path if path.parent == root and path.is_dir() else None
    commit7 = row.commit[:7]
    for path in run_dirs(repo):
        number, commit = RUN_NAME.match(path.name).groups()
        if commit == commit7 and (row.experiment is None or int(number) == row.experiment):
            return path
    return None


def resolve_run(repo: Path, ref: str) -> Path:
    """Find a run from what a user types: a run dir path or name, an experiment number, a commit."""
    path = Path(ref)
    if path.is_dir() and (path / "train.py").is_file():
        return path
    by_name = repo / RUNS_DIR / ref
    if RUN_NAME.match(ref) and by_name.is_dir():
        return by_name
    runs = run_dirs(repo)
    matches = []
    if ref.isdigit():
        matches = [p for p in runs if int(RUN_NAME.match(p.name).group(1)) == int(ref)]
    if not matches and COMMIT_PREFIX.match(ref):
        matches = [p for p in runs if RUN_NAME.match(p.name).group(2).startswith(ref[:7])]
    if not matches:
        raise UserError(f"no run matches {ref!r}: give a run dir (runs/0007-abc1234), an "
                        f"experiment number or a commit prefix ({len(runs)} runs in {repo}/runs)")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[:6])
        raise UserError(f"{ref!r} matches several runs ({names}): give the run dir name instead")
    return matches[0]


def prune_checkpoints(repo: Path, rows: list[Row], keep_best: int) -> list[Path]:
    """Delete model.pt of every run in `rows` except the best `keep_best` kept runs and, when
    keep_best > 0, the runs of the current best (the last kept commit), which held-out
    verification scores as a parent (verify/private.py).

    Only run directories named by `rows` are touched (never another tag's), and only their
    model.pt: logs, train.py copies, metrics, configs and samples stay. Returns the deleted paths.
    """
    if keep_best < 0:
        raise ValueError(f"keep_best must be >= 0, got {keep_best}")
    kept = sorted((r for r in rows if r.status == "keep" and is_measured(r)),
                  key=lambda r: r.val_bpb)
    protected = {run_dir_for(repo, r) for r in kept[:keep_best]}
    best = next((r.commit for r in reversed(rows) if r.status == "keep"), None)
    if keep_best > 0:
        protected |= {run_dir_for(repo, r) for r in rows if r.status == "keep" and r.commit == best}
    deleted = []
    for row in rows:
        path = run_dir_for(repo, row)
        if path is None or path in protected:
            continue
        weights = path / WEIGHTS
        if weights.is_file():
            weights.unlink()
            deleted.append(weights)
    return deleted

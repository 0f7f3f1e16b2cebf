"""Pruning keeps the best kept runs' weights and deletes nothing else; runs resolve from input."""

import threading
from pathlib import Path

import pytest

from autoresearch.artifacts.checkpoints import (
    prune_checkpoints,
    resolve_run,
    run_dir_for,
    run_dirs,
    run_path,
)
from autoresearch.errors import UserError
from autoresearch.model import Row

OTHER_FILES = ("run.log", "train.py", "metrics.json", "config.json", "sample_output.txt")
TAG = "t"


def make_runs(repo: Path) -> list[Row]:
    spec = [(1, "keep", 1.00), (2, "keep", 0.98), (3, "discard", 0.99), (4, "keep", 0.97),
            (5, "crash", 0.0), (6, "keep", 0.975), (7, "keep", 0.96)]
    rows = []
    for n, status, bpb in spec:
        commit = f"{n:x}" * 7
        run_dir = repo / run_path(TAG, n, commit)  # where the loop puts run n
        run_dir.mkdir(parents=True)
        for name in ("model.pt",) + OTHER_FILES:
            (run_dir / name).write_text(name)
        # rows from the loop name their run dir; half of them here rely on the commit lookup
        rows.append(Row(commit, bpb, 1.0, status, f"run {n}", experiment=n, tag=TAG,
                        run_dir=run_path(TAG, n, commit) if n % 2 else ""))
    return rows


def weights(repo: Path) -> set[str]:
    return {p.parent.name[:4] for p in (repo / "runs").glob("**/model.pt")}


def test_prune_keeps_the_best_k(tmp_path):
    rows = make_runs(tmp_path)
    deleted = prune_checkpoints(tmp_path, rows, keep_best=2)
    # the newest two keeps: the kept line only improves (by paired gains, whatever one run said)
    assert weights(tmp_path) == {"0007", "0006"}
    assert sorted(p.parent.name[:4] for p in deleted) == ["0001", "0002", "0003", "0004", "0005"]
    for run_dir in run_dirs(tmp_path):  # logs, code, metrics, samples all stay
        assert all((run_dir / name).is_file() for name in OTHER_FILES)
    assert prune_checkpoints(tmp_path, rows, keep_best=2) == []  # idempotent
    prune_checkpoints(tmp_path, rows, keep_best=1)
    assert weights(tmp_path) == {"0007"}
    prune_checkpoints(tmp_path, rows, keep_best=0)
    assert weights(tmp_path) == set()


def prune_at_once(repo: Path, rows: list[Row], start: threading.Barrier, results: list,
                  errors: list) -> None:
    start.wait()
    try:
        results.append(prune_checkpoints(repo, rows, keep_best=1))
    except OSError as e:
        errors.append(e)


def test_workers_pruning_at_once_each_delete_a_file_once(tmp_path):
    """Workers decide at the same moment and all prune the tag: each weights file goes once, and
    none fails because another deleted a file it listed (a CI run died so). The race is real, so
    it is run for many rounds: on the old code one of them lost it nearly every time."""
    rows = []
    for n in range(1, 101):
        commit = f"{n:07x}"
        (tmp_path / run_path(TAG, n, commit)).mkdir(parents=True)
        rows.append(Row(commit, 1.0, 1.0, "discard", f"run {n}", experiment=n, tag=TAG,
                        run_dir=run_path(TAG, n, commit)))
    for _ in range(30):
        for row in rows:
            (tmp_path / row.run_dir / "model.pt").write_text("w")
        start, results, errors = threading.Barrier(4), [], []
        threads = [threading.Thread(target=prune_at_once, args=(tmp_path, rows, start, results,
                                                                errors)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        deleted = [p for found in results for p in found]
        assert len(deleted) == len(set(deleted)) == 100 and weights(tmp_path) == set()


def test_prune_touches_only_the_given_rows(tmp_path):
    rows = make_runs(tmp_path)
    stranger = tmp_path / run_path("other", 1, "fedcba9")  # another tag's run: not in `rows`
    stranger.mkdir(parents=True)
    (stranger / "model.pt").write_text("w")
    prune_checkpoints(tmp_path, rows, keep_best=3)
    assert (stranger / "model.pt").is_file()
    assert weights(tmp_path) == {"0001", "0004", "0006", "0007"}  # the stranger + newest 3
    with pytest.raises(ValueError):
        prune_checkpoints(tmp_path, rows, keep_best=-1)


def test_run_dir_for_stays_inside_runs(tmp_path):
    rows = make_runs(tmp_path)
    assert run_dir_for(tmp_path, rows[1]).name == "0002-2222222"  # found by commit + number
    (tmp_path / "elsewhere").mkdir()
    evil = Row("aaaaaaa", 1.0, 1.0, "keep", "x", run_dir="runs/../elsewhere")
    assert run_dir_for(tmp_path, evil) is None
    assert run_dir_for(tmp_path, Row("baseline", 1.0, 1.0, "keep", "other tool's row")) is None


def test_resolve_run(tmp_path):
    make_runs(tmp_path)
    assert resolve_run(tmp_path, "4").name == "0004-4444444"
    assert resolve_run(tmp_path, "0004").name == "0004-4444444"
    assert resolve_run(tmp_path, "0004-4444444").name == "0004-4444444"
    assert resolve_run(tmp_path, "555555").name == "0005-5555555"  # commit prefix
    assert resolve_run(tmp_path, "6666666" + "0" * 33).name == "0006-6666666"  # full sha
    path = tmp_path / run_path(TAG, 3, "3333333")
    assert resolve_run(tmp_path, str(path)) == path
    with pytest.raises(UserError, match="no run matches '99'"):
        resolve_run(tmp_path, "99")
    (tmp_path / run_path(TAG, 4, "4444abc")).mkdir()
    with pytest.raises(UserError, match="matches several runs"):
        resolve_run(tmp_path, "4444")


def test_runs_of_older_versions_and_other_tags(tmp_path):
    """Runs an older version left in runs/<n>-<commit7>/ are still found, pruned and sampled;
    a number two tags share is resolved by the name with its tag."""
    rows = make_runs(tmp_path)
    old = tmp_path / "runs" / "0002-abcdef0"
    old.mkdir()
    (old / "train.py").write_text("old")
    (old / "model.pt").write_text("w")
    old_row = Row("abcdef0", 0.5, 1.0, "keep", "an old run", experiment=2,
                  run_dir="runs/0002-abcdef0")
    assert run_dir_for(tmp_path, old_row) == old.resolve()
    assert run_dir_for(tmp_path, Row("abcdef0", 0.5, 1.0, "keep", "x", experiment=2)) == \
        old.resolve()
    assert prune_checkpoints(tmp_path, [*rows, old_row], keep_best=1) and \
        (old / "model.pt").is_file()  # the best of all
    assert resolve_run(tmp_path, "0002-abcdef0") == old.resolve()
    with pytest.raises(UserError, match=r"'2' matches several runs \(0002-abcdef0, t/0002-2222222"):
        resolve_run(tmp_path, "2")
    assert resolve_run(tmp_path, "t/0002-2222222").parent.name == TAG
    assert run_dir_for(tmp_path, Row("2222222", 1.0, 1.0, "keep", "x", run_dir="t/0002-2222222")) \
        is None  # a run_dir cell is relative to the repo: runs/ first

"""The whole product on the cpu profile: `agent_loop.py run --agent sweep` drives the real
train.py for a baseline and three experiments in a real git repository, then the review
commands read what it left."""

import math
import os
import subprocess
import sys

import pytest
from conftest import REPO, SESSION_CACHE, make_project

from autoresearch.ledger.results import read_results


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def agent_loop(repo, *args, timeout=600):
    env = {**os.environ, "AUTORESEARCH_PROFILE": "cpu", "AUTORESEARCH_CACHE": str(SESSION_CACHE)}
    return subprocess.run([sys.executable, str(REPO / "agent_loop.py"), *args, "-C", str(repo)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_sweep_loop_runs_real_train_py_for_three_experiments(prepared_cache, tmp_path):
    repo = make_project(tmp_path / "project")
    start = git(repo, "rev-parse", "HEAD")
    original = (repo / "train.py").read_text()
    # what the human wrote must survive every revert
    (repo / "program.md").write_text((repo / "program.md").read_text() + "\nNote: try LRs.\n")
    (repo / "notes.md").write_text("my untracked notes\n")

    # A floor of 1 bpb: no step of the sweep gets through the screen, so there are no paired
    # runs to wait for (on the cpu profile the budget is time and a step can land anywhere;
    # keeps and their confirmations are covered in test_loop.py)
    result = agent_loop(repo, "run", "--tag", "e2e", "--agent", "sweep", "--max-experiments", "3",
                        "--noise-runs", "0", "--noise-floor", "1", "--plain")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    rows = read_results(repo / "results.tsv")
    assert [r.kind for r in rows] == ["baseline", "experiment", "experiment", "experiment"]
    assert [r.experiment for r in rows] == [1, 2, 3, 4]
    assert all(r.profile == "cpu" and r.tag == "e2e" for r in rows)
    assert all(r.agent == "sweep" for r in rows[1:])  # the baseline is nobody's proposal
    assert rows[0].status == "keep" and rows[0].description.startswith("baseline")
    for row in rows:
        assert row.status in ("keep", "discard", "crash")
        if row.status != "crash":
            assert math.isfinite(row.val_bpb) and 0.5 < row.val_bpb < 5
            assert row.training_seconds >= 10
        run_dir = repo / row.run_dir
        assert (run_dir / "run.log").exists() and (run_dir / "train.py").exists()
        assert (run_dir / "metrics.json").exists()

    # git agrees with the ledger: kept commits on the branch, the others on side refs
    branch = git(repo, "rev-parse", "autoresearch/e2e")
    kept = [r for r in rows if r.status == "keep"]
    assert branch.startswith(kept[-1].commit)
    on_branch = git(repo, "rev-list", f"{start}..autoresearch/e2e").split()
    assert len(on_branch) == len(kept) - 1  # the baseline is the starting commit itself
    for row in rows:
        if row.status != "keep":
            tried = git(repo, "rev-parse", f"refs/autoresearch/e2e/tried/{row.experiment}")
            assert tried.startswith(row.commit)
            assert git(repo, "diff", "--name-only", f"{tried}^", tried) == "train.py"
    assert (repo / "train.py").read_text() == original  # the user's checkout is not the loop's

    assert "Note: try LRs." in (repo / "program.md").read_text()
    assert (repo / "notes.md").read_text() == "my untracked notes\n"
    assert git(repo, "status", "--porcelain", "--", "train.py") == ""

    # kept runs leave a sample; weights are pruned to the best few
    best = min(kept, key=lambda r: r.val_bpb)
    assert (repo / best.run_dir / "model.pt").exists()
    assert (repo / best.run_dir / "sample_output.txt").read_text().strip()

    status = agent_loop(repo, "status", "--tag", "e2e")
    assert status.returncode == 0 and f"{best.val_bpb:.6f}" in status.stdout
    summary = agent_loop(repo, "summary", "--tag", "e2e")
    assert summary.returncode == 0 and "4" in summary.stdout
    plot = agent_loop(repo, "plot", "--out", str(tmp_path / "p.png"))
    assert plot.returncode == 0 and (tmp_path / "p.png").stat().st_size > 10_000

"""The review commands on one tag's files: `status` shows the best as report.best computes it
from results.tsv, and every command warns about hand-damaged rows on stderr, once each."""

import importlib.util
import subprocess

import pytest
import typer
from loop_helpers import AGENT_LOOP
from typer.testing import CliRunner

from autoresearch.ledger.results import Row, append_result
from autoresearch.ledger.state import State, save_state
from autoresearch.policy import Noise
from autoresearch.review.dashboard import Board
from autoresearch.review.review_cli import register

spec = importlib.util.spec_from_file_location("agent_loop", AGENT_LOOP)
agent_loop = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent_loop)

TAG = "t"
BASELINE_WAVE = [(3.109422, "keep", "baseline"), (3.101000, "discard", "noise"),
                 (3.104815, "discard", "noise")]  # mean 3.105079
WARNING = ("warning: results.tsv line 5: val_bpb 'n/a' is not a number; row skipped\n")


@pytest.fixture
def night(tmp_path):
    """A checkout on branch autoresearch/t after the baseline wave, with state.json, and a row
    broken by hand (its val_bpb) after it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", f"autoresearch/{TAG}"], cwd=repo, check=True)
    for n, (value, status, kind) in enumerate(BASELINE_WAVE, start=1):
        append_result(repo / "results.tsv", Row(
            "c0ffee0", value, 1.0, status, "baseline", experiment=n, kind=kind, tag=TAG,
            profile="cpu", device="cpu", total_seconds=60.0))
    with open(repo / "results.tsv", "a") as f:
        f.write("badc0de\tn/a\t1.0\tkeep\tedited by hand\t4\texperiment\tt\n")
    # state.json's own idea of the best must not matter: status reads results.tsv
    noise = Noise(threshold=0.0085, floor=0.001, values=[v for v, _, _ in BASELINE_WAVE],
                  std=0.0042, spread=0.0084, runs_requested=2, rule="max(floor, 2 x std)")
    save_state(repo, State(tag=TAG, branch=f"autoresearch/{TAG}", base_commit="c0ffee0" * 5,
                           created_at="2026-01-01T00:00:00+00:00", fixed_sha256={},
                           best_commit="c0ffee0" * 5, noise=noise))
    return repo


def invoke(app, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


def test_status_shows_the_best_from_results_tsv(night):
    result = invoke(agent_loop.app, "status", "--repo", night)
    assert "best: 3.105079 (baseline) #1 c0ffee0 baseline" in result.stdout
    assert "baseline 3.105079, change +0.000000" in result.stdout
    assert "noise: within-worker std 0.004200 (0 dof); worker offsets -; min detectable gain " \
        "0.008500" in result.stdout
    assert result.stderr == WARNING


def test_each_review_command_warns_once_on_stderr(night, tmp_path):
    review = typer.Typer()
    register(review)
    results = night / "results.tsv"
    for app, args in ((agent_loop.app, ["results", "--repo", night]),
                      (review, ["summary", "--results", results]),
                      (review, ["plot", "--results", results, "--out", tmp_path / "p.png"])):
        result = invoke(app, *args)
        assert result.stderr == WARNING, args
        assert "badc0de" not in result.stdout and "edited by hand" not in result.stdout


def test_the_dashboard_warns_once_however_often_it_reads(night, capsys):
    board = Board(night, night / "results.tsv")
    first = board.results_payload()
    assert first["best"]["label"] == "3.105079 (baseline)"
    assert [r["n"] for r in first["rows"]] == [1, 2, 3]
    with open(night / "results.tsv", "a") as f:  # the file changes: it is read again
        f.write("c0ffee0\t3.2\t1.0\tdiscard\tnoise\t5\tnoise\tt\n")
    assert [r["n"] for r in board.results_payload()["rows"]] == [1, 2, 3, 5]
    assert capsys.readouterr().err == WARNING

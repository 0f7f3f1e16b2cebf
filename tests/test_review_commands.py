"""The review commands on one tag's files: `status` shows the best as report.best computes it
from results.tsv, and every command warns about hand-damaged rows on stderr, once each."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import typer
from loop_helpers import AGENT_LOOP, edit, make_repo, run_loop, tag_rows
from rich.console import Console
from typer.testing import CliRunner

from autoresearch.ledger.results import COLUMNS, append_result, read_results
from autoresearch.ledger.state import State, save_state
from autoresearch.model import Row
from autoresearch.policy import Noise
from autoresearch.review.console import LiveConsole
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
                  std=0.0042, spread=0.0084, rule="max(floor, 2 x std)")
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
        f.write("c0ffee0\t3.2\t1.0\tdiscard\tnoise\t5\tnoise\tt" + "\t" * (len(COLUMNS) - 8)
                + "\n")  # a whole row: a short one reads as torn
    assert [r["n"] for r in board.results_payload()["rows"]] == [1, 2, 3, 5]
    assert capsys.readouterr().err == WARNING


def wait_for(check, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_a_run_that_is_starting_reads_as_a_running_loop(tmp_path):
    """Run #2's train.py is held before its first line (imports, data, compile), right after
    run #1's row: `status` and the dashboard must call the live loop running and name #2."""
    repo = make_repo(tmp_path / "repo")
    pids, hold = tmp_path / "pids", tmp_path / "hold"
    hold.write_text("2\n")
    env = {**os.environ, "FAKE_PID_FILE": str(pids), "FAKE_HOLD": str(hold)}
    loop = subprocess.Popen([sys.executable, str(AGENT_LOOP), "run", "--tag", TAG, "--agent",
                             "sweep", "--noise-runs", "0", "--max-experiments", "1",
                             "--no-sample", "-C", "."], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pids.is_file() and len(pids.read_text().split()) == 2, "run #2")
        status = subprocess.run([sys.executable, str(AGENT_LOOP), "status", "-C", "."],
                                cwd=repo, capture_output=True, text=True, timeout=60)
        assert "loop: running" in status.stdout and "#2 experiment" in status.stdout, \
            status.stdout
        assert "interrupted" not in status.stdout
        live = Board(repo, repo / "results.tsv").live_payload()
        assert live["running"] and live["live"]["workers"]["0"]["experiment"] == 2
    finally:
        hold.unlink()
        assert loop.wait(timeout=120) == 0


@pytest.fixture(scope="module")
def two_tags(tmp_path_factory):
    """A checkout where loop `first` ran, then loop `second`: each a baseline, an experiment
    kept (with its control and confirmation runs) and one discarded."""
    repo = make_repo(tmp_path_factory.mktemp("tags") / "repo")
    for tag in ("first", "second"):
        run_loop(repo, [edit("lower val", VAL_BPB=0.9), edit("worse val", VAL_BPB=0.95)],
                 tag=tag)
    return repo


def review(repo, *args: str) -> subprocess.CompletedProcess:
    """A review verb as a user types it in the checkout."""
    return subprocess.run([sys.executable, str(AGENT_LOOP), *args, "-C", "."], cwd=repo,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


NEWEST = "tag: second (newest of 2; --tag to choose)\n"


@pytest.mark.parametrize("verb", [["summary"], ["plot", "--out", "p.png"], ["results"],
                                  ["status"], ["journal"], ["diff", "2"], ["stop"]])
def test_every_verb_shows_the_newest_tag_and_says_so(two_tags, verb):
    out = review(two_tags, *verb)
    assert out.returncode == 0, out.stderr
    assert out.stderr == NEWEST
    if verb == ["summary"]:
        assert "autoresearch summary — second" in out.stdout
    if verb == ["status"]:
        assert "tag second" in out.stdout


def test_results_lists_one_tag_and_only_keeps_with_kept_only(two_tags):
    out = review(two_tags, "results", "--tag", "first")
    assert out.stderr == ""  # the tag asked for: nothing to announce
    numbers = [line.split("│")[1].strip() for line in out.stdout.splitlines()
               if line.startswith("│") and line.split("│")[1].strip().isdigit()]
    assert numbers and len(numbers) == len(set(numbers))  # one tag: no number twice
    assert "tag first" in out.stdout and "second" not in out.stdout
    kept = review(two_tags, "results", "--kept-only").stdout
    assert "lower val" in kept and "experiment" in kept
    for kind in ("baseline", "confirm", "control"):
        assert kind not in kept


@pytest.mark.parametrize("verb", [["results"], ["summary"], ["plot"], ["dashboard", "--port",
                                  "0"], ["status"], ["journal"], ["diff", "2"], ["stop"]])
def test_an_unknown_tag_is_one_line_that_lists_the_tags(two_tags, verb):
    out = review(two_tags, *verb, "--tag", "nope")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == "error: no tag 'nope' (tags here: first, second); pick one with --tag\n"


@pytest.mark.slow
def test_the_keep_gets_the_sample_not_its_confirmation_run(tmp_path):
    """The fake trainer's weights are no model, so sampling fails, and the loop's note names
    the run it sampled: the keep's, which the summary and the dashboard show."""
    repo = make_repo(tmp_path / "repo")
    _, _, ui = run_loop(repo, [edit("lower val", VAL_BPB=0.9)], sample=True)
    rows = tag_rows(repo, TAG)
    keep = next(r for r in rows if r.kind == "experiment")
    confirm = next(r for r in rows if r.kind == "confirm")
    assert keep.status == confirm.status == "keep"
    sampled = [e for e in ui.events if e.startswith("sampling ")]
    assert any(e.startswith(f"sampling {Path(keep.run_dir).name} ") for e in sampled), sampled
    assert not any(Path(confirm.run_dir).name in e for e in sampled)


def shift_session(repo: Path, after: int, hours: float) -> None:
    """Move the loop's second session `hours` later, as if it was resumed the next night: its
    events.log lines and its rows (experiment numbers above `after`)."""
    def later(stamp: str) -> str:
        return (datetime.fromisoformat(stamp) + timedelta(hours=hours)).isoformat()

    events = repo / ".autoresearch" / TAG / "events.log"
    lines, sessions = [], 0
    for line in events.read_text().splitlines():
        stamp, _, message = line.partition(" ")
        sessions += message.startswith("loop started")
        lines.append(f"{later(stamp) if sessions > 1 else stamp} {message}")
    events.write_text("\n".join(lines) + "\n")
    rows = read_results(repo / "results.tsv")
    (repo / "results.tsv").unlink()
    for row in rows:
        if row.experiment > after:
            row.timestamp = later(row.timestamp)
        append_result(repo / "results.tsv", row)


@pytest.mark.slow
def test_rates_count_the_loop_time_and_the_words_are_the_readme_s(tmp_path):
    repo = make_repo(tmp_path / "repo")
    run_loop(repo, [edit("lower val", VAL_BPB=0.9)], noise_runs=1)
    first = len(read_results(repo / "results.tsv"))
    run_loop(repo, [edit("worse val", VAL_BPB=0.95)], noise_runs=1, max_experiments=2)
    shift_session(repo, first, hours=10)
    out = review(repo, "summary", "--json")
    data = json.loads(out.stdout)
    runs = read_results(repo / "results.tsv")
    # runs: every train.py execution; experiments: the agent's two; keeps: the kept one
    assert data["runs"] == len(runs) and data["experiments"] == 2 and data["kept"] == 1
    assert data["runs_by_kind"]["baseline"] == 1 and data["runs_by_kind"]["noise"] == 1
    # two short sessions ten hours apart: the ten idle hours are not the loop's time
    assert data["active_hours"] < 1 and not data["active_estimated"]
    assert data["experiments_per_hour"] == pytest.approx(2 / data["active_hours"])
    assert data["runs_per_hour"] == pytest.approx(len(runs) / data["active_hours"])
    text = review(repo, "summary").stdout
    assert f"runs              {len(runs)}  (" in text
    assert "experiments       2  (1 kept, 1 discarded, 0 crashed)" in text
    assert re.search(r"experiments/hour  [\d.]+  \(runs/hour [\d.]+, over [\dhms]+ of loop "
                     r"time\)", text)


def test_the_live_panel_wraps_at_80_columns():
    """The loop's console soft-wraps (make_console), as on a real terminal: the panel's lines
    must still wrap inside it, not lose the end of a description."""
    console = Console(width=80, force_terminal=True, color_system=None, soft_wrap=True,
                      highlight=False, record=True)
    panel = LiveConsole(console)
    panel.update({"tag": TAG, "agent": "sweep", "best_val_bpb": 0.99, "threshold": 0.002,
                  "workers": {"0": {"worker": 0, "phase": "training", "experiment": 3,
                                    "commit": "abcdef1", "description": "DEPTH 8 -> 10",
                                    "step": 42, "progress_pct": 37.5, "remaining_s": 190}}})
    panel.outcome(Row("abcdef1", 0.991234, 40.0, "discard", "a long description " * 4 + "END",
                      experiment=2, kind="experiment", reason="+0.001 vs parent"))
    console.export_text(clear=True)  # the outcome's log line: a log line is never cut
    console.print(panel.render())
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    joined = " ".join(line.strip("│ ") for line in text.splitlines())
    assert "END (+0.001 vs parent)" in joined


def test_resuming_a_tag_says_once_that_uncommitted_train_py_edits_are_not_run(tmp_path):
    repo = make_repo(tmp_path / "repo")
    command = ["run", "--tag", TAG, "--agent", "sweep", "--noise-runs", "0",
               "--max-experiments", "1", "--no-sample"]
    first = review(repo, *command)
    assert first.returncode == 0, first.stderr
    assert "uncommitted" not in first.stdout
    with open(repo / "train.py", "a") as f:
        f.write("# my idea, not committed yet\n")
    again = review(repo, *command)
    assert again.returncode == 0, again.stderr
    note = ("note: uncommitted changes to train.py, which tag t does not run: it resumes from "
            "its branch autoresearch/t. To try them, commit them and start a new --tag")
    assert again.stdout.count(note) == 1, again.stdout
    assert (repo / "train.py").read_text().endswith("# my idea, not committed yet\n")

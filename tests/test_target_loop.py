"""The whole loop on a target of its own, whose metric is higher-is-better: real git repos, real
runs of the target's command, the loop's own decisions and records."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
import requests
from loop_helpers import (
    check_git_matches_results,
    git,
    run_cli,
    run_loop,
    set_constants,
    tag_rows,
)
from target_helpers import edit_solve, make_target_repo

from autoresearch.agents.prompt import build_context, cli_prompt, system_prompt
from autoresearch.ledger.results import read_results
from autoresearch.memory.journal import load as load_journal
from autoresearch.review.dashboard import Board, make_server
from autoresearch.review.plot import draw_progress
from autoresearch.target import load_target


@pytest.fixture
def target_repo(tmp_path: Path) -> Path:
    return make_target_repo(tmp_path / "toy")


def run_target(repo: Path, steps, **options):
    return run_loop(repo, steps, target=load_target(repo), timeout=None, **options)


def values(repo: Path) -> list[tuple[int, str, str, float]]:
    """(experiment, kind, status, accuracy) of each row, as results.tsv has them."""
    lines = (repo / "results.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    return [(int(r["experiment"]), r["kind"], r["status"], float(r["accuracy"])) for r in rows]


def test_a_higher_accuracy_is_kept_and_a_lower_one_discarded(target_repo: Path) -> None:
    base = git(target_repo, "rev-parse", "HEAD")
    steps = [edit_solve("raise the score", SCORE=0.8), edit_solve("lower it", SCORE=0.7),
             edit_solve("break it", MODE="crash")]
    reason, agent, ui = run_target(target_repo, steps)
    assert reason == "reached --max-experiments 3"
    header = (target_repo / "results.tsv").read_text().splitlines()[0].split("\t")
    assert header[:5] == ["commit", "accuracy", "memory_gb", "status", "description"]
    assert "val_bpb" not in header
    # the better (higher) value is kept after it ran again (the default rule's confirmation);
    # the lower one is not
    assert values(target_repo) == [
        (1, "baseline", "keep", 0.5), (2, "experiment", "keep", 0.8),
        (3, "confirm", "keep", 0.8), (4, "experiment", "discard", 0.7),
        (5, "experiment", "crash", 0.0)]
    rows = {r.experiment: r for r in tag_rows(target_repo)}
    assert rows[5].reason == "other"
    # the discard's reason reads in accuracy, the right way up: 0.1 below the parent's 0.8
    assert re.match(r"-0\.100000 vs parent \w{7} on worker 0 \(0\.800000", rows[4].reason)
    check_git_matches_results(target_repo)
    assert git(target_repo, "rev-parse", "HEAD") == base
    kept = git(target_repo, "show", "autoresearch/t:solve.py")
    assert "SCORE = 0.8" in kept and git(target_repo, "diff", base, "autoresearch/t",
                                         "--name-only") == "solve.py"
    # the run folder has the target's files, its log, and the extra metric recorded
    run2 = target_repo / rows[2].run_dir
    assert (run2 / "evaluate.py").is_file() and (run2 / "reference.txt").is_file()
    summary = json.loads((run2 / "metrics.json").read_text())["summary"]
    assert summary["accuracy"] == 0.8 and summary["fit_seconds"] == 0.25
    # what the agent saw: its file, the metric by its name and its real value
    first, third = agent.requests[0], agent.requests[2]
    assert first.target.edited == "solve.py" and "SCORE = 0.5" in first.train_py
    assert "Raise accuracy." in first.program
    assert first.target.metric.value(first.best_val_bpb) == 0.5
    assert third.target.metric.value(third.best_val_bpb) == 0.8
    # the prompts every agent backend sends speak of solve.py and accuracy, never train.py
    for prompt in (cli_prompt(third), system_prompt(third.target) + build_context(third)):
        assert "train.py" not in prompt and "val_bpb" not in prompt and "GPT" not in prompt
        assert "Propose one change to solve.py that you expect to raise accuracy." in prompt
        assert "Best accuracy so far: 0.800000." in prompt
        assert "scored by accuracy: higher is better" in prompt
        assert re.search(r"\n +2  \w{7}  0\.800000 .* keep +experiment", prompt)  # values
    # rows read back with the metric hold its loss; without it the file is refused
    assert [r.val_bpb for r in read_results(target_repo / "results.tsv",
                                            metric=first.target.metric)][:3] == [-0.5, -0.8, -0.8]


def test_the_metric_is_read_from_the_json_file_the_run_writes(tmp_path: Path) -> None:
    repo = make_target_repo(tmp_path / "toy", json_file="scores.json")
    # its charter is a file of its own, not committed (the user steers with it between runs)
    table = (repo / "pyproject.toml").read_text()
    (repo / "pyproject.toml").write_text(table.replace("gpu = false\n",
                                                       'gpu = false\nprogram = "charter.md"\n'))
    git(repo, "commit", "-q", "-am", "a charter of its own")
    (repo / "charter.md").write_text("Raise accuracy, by any honest means.\n")
    _, agent, _ = run_target(repo, [edit_solve("raise the score", SCORE=0.9)])
    assert "Raise accuracy, by any honest means." in agent.requests[0].program
    assert values(repo)[:3] == [(1, "baseline", "keep", 0.5), (2, "experiment", "keep", 0.9),
                                (3, "confirm", "keep", 0.9)]


def test_a_hostile_agent_cannot_change_the_fixed_files(target_repo: Path) -> None:
    cheat = {"evaluate.py": "print('---')\nprint('accuracy: 1.0')\n",
             "reference.txt": "whatever I like\n"}
    checkout = {"../../../../reference.txt": "answers from the checkout\n"}  # the user's copy
    steps = [edit_solve("cheat with the harness", also=cheat, SCORE=0.6),
             edit_solve("cheat in the checkout", also=checkout, SCORE=0.7),
             edit_solve("change the answers while running", MODE="tamper", SCORE=0.95)]
    reason, agent, ui = run_target(target_repo, steps, max_experiments=1)
    # the first two proposals are refused (their edits outside solve.py undone), never run
    assert any("proposal rejected: changed files other than solve.py" in e for e in ui.events)
    assert any(e.startswith("w0: proposal rejected: changed ") and "reference.txt outside its "
               "work tree" in e for e in ui.events)
    assert any("reference.txt (changed) outside solve.py; undone" in e  # the guard names it
               for e in ui.events)
    assert (target_repo / "reference.txt").read_text() == "the answers\n"
    # the second runs, changes reference.txt in its run folder, and is void, not kept
    rows = tag_rows(target_repo)
    assert [(r.kind, r.status, r.reason) for r in rows] == [
        ("baseline", "keep", ""), ("experiment", "crash", "tamper")]
    assert git(target_repo, "status", "--porcelain") == ""
    assert git(target_repo, "rev-parse", "autoresearch/t") == \
        git(target_repo, "rev-parse", "HEAD")


@pytest.mark.slow
def test_cpu_workers_run_the_sweep_and_every_view_names_the_metric(target_repo: Path) -> None:
    """The real CLI on the toy target, as a user types it: two CPU workers, the sweep agent
    moving solve.py's constants; then summary, status, journal and the dashboard's API."""
    ran = run_cli("-C", ".", "run", "--tag", "t", "--agent", "sweep", "--workers", "2",
                  "--max-experiments", "4", "--plain", cwd=target_repo, timeout=240)
    assert ran.returncode == 0, ran.stderr
    said = (ran.stdout + ran.stderr).lower()  # the LLM harness's extras, not even a warning:
    assert "verification" not in said and "sampl" not in said and "checkpoint" not in said
    rows = tag_rows(target_repo)
    assert {r.worker for r in rows} == {0, 1} and {r.device for r in rows} == {"cpu"}
    assert {r.gpu for r in rows} == {""}
    kept = [-r.val_bpb for r in rows if r.status == "keep" and r.kind != "baseline"]
    assert kept and min(kept) > 0.5  # the sweep raised the accuracy, and only raises were kept
    best = max(kept)

    summary = run_cli("-C", ".", "summary", cwd=target_repo)
    assert summary.returncode == 0, summary.stderr
    out = " ".join(summary.stdout.split())
    assert "metric accuracy (higher is better)" in out
    assert "baseline accuracy 0.500000" in out and f"best accuracy {best:.6f} (baseline +" in out
    as_json = json.loads(run_cli("-C", ".", "summary", "--json", cwd=target_repo).stdout)
    assert (as_json["metric"], as_json["direction"]) == ("accuracy", "higher")
    assert as_json["baseline_bpb"] == 0.5 and as_json["best_bpb"] == pytest.approx(best)
    assert as_json["improvement"] == pytest.approx(best - 0.5)

    status = run_cli("-C", ".", "status", cwd=target_repo).stdout
    assert f"best: accuracy (higher is better) {best:.6f} (baseline +" in status
    assert "baseline 0.500000, change +" in status
    journal = run_cli("-C", ".", "journal", "--full", cwd=target_repo).stdout
    assert re.search(r"#\d+ baseline w\d keep 0\.500000", journal)
    assert not re.search(r" (keep|discard) -0\.", journal)  # values, never their losses

    plotted = run_cli("-C", ".", "plot", "--out", "night.png", cwd=target_repo)
    assert plotted.returncode == 0 and (target_repo / "night.png").is_file(), plotted.stderr
    fig = draw_progress(rows, metric=load_target(target_repo).metric)
    axes = fig.axes[0]
    assert axes.get_ylabel() == "accuracy (higher is better)"
    assert "\naccuracy 0.500000" in axes.get_title(loc="left")
    fig.canvas.draw()
    ticks = [float(t.get_text()) for t in axes.get_yticklabels() if t.get_text()]
    # the axis reads in accuracy, not in its loss: better (higher) is down, as for val_bpb
    assert min(ticks) >= 0 and max(ticks) >= best and ticks == sorted(ticks, reverse=True)

    server = make_server(Board(target_repo, target_repo / "results.tsv"), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        data = requests.get(f"http://127.0.0.1:{port}/api/results", timeout=10).json()
        keep = next(r["n"] for r in data["rows"] if r["status"] == "keep"
                    and r["kind"] == "experiment")
        diff = requests.get(f"http://127.0.0.1:{port}/api/diff/{keep}", timeout=10).json()
    finally:
        server.shutdown()
        server.server_close()
    assert data["metric"] == {"name": "accuracy", "direction": "higher",
                              "label": "accuracy (higher is better)"}
    assert data["rows"][0]["val_bpb"] == 0.5 and data["best"]["value"] == pytest.approx(best)
    assert max(r["best"] for r in data["rows"] if r["best"] is not None) == pytest.approx(best)
    assert "+++ b/solve.py" in diff["text"] and "+SCORE = " in diff["text"]
    lo, hi = data["y_limits"]
    assert lo < 0.5 < best < hi


MAKE_DATA = '''import sys
with open("setup.log", "a") as f:
    f.write("ran\\n")
if "--fail" in sys.argv:
    raise SystemExit("no data source: set DATA_URL")
'''


def with_setup(repo: Path, command: str) -> Path:
    """The toy target with a setup command, committed."""
    (repo / "make_data.py").write_text(MAKE_DATA)
    table = (repo / "pyproject.toml").read_text()
    (repo / "pyproject.toml").write_text(table.replace("gpu = false\n",
                                                       f'gpu = false\nsetup = "{command}"\n'))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "setup")
    return repo


def test_setup_runs_once_for_a_tag_and_its_failure_is_one_line(target_repo: Path) -> None:
    with_setup(target_repo, "python make_data.py")
    run_target(target_repo, [edit_solve("raise the score", SCORE=0.8)])
    run_target(target_repo, [edit_solve("lower it", SCORE=0.6)], max_experiments=2)
    assert (target_repo / "setup.log").read_text() == "ran\n"  # not again on resume
    assert len(tag_rows(target_repo)) == 4  # baseline; a keep and its confirm; a discard

    broken = with_setup(make_target_repo(target_repo.parent / "broken"),
                        "python make_data.py --fail")
    proc = run_cli("-C", ".", "run", "--tag", "t", "--agent", "sweep", cwd=broken)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: setup `python make_data.py --fail` failed (exit 1): no data source: set "
        "DATA_URL; fix it, then run again"]
    assert not (broken / "results.tsv").exists()
    assert "autoresearch/t" not in git(broken, "branch", "--list")


def test_a_target_of_its_own_gets_no_note_about_pytorch_bytecode(target_repo: Path) -> None:
    """The PYTHONDONTWRITEBYTECODE note is about train.py's PyTorch start-up: a target of its own
    does not get it (its failing setup's line is all stderr says)."""
    with_setup(target_repo, "python make_data.py --fail")
    proc = run_cli("-C", ".", "run", "--tag", "t", "--agent", "sweep", cwd=target_repo,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: setup `python make_data.py --fail` failed")


@pytest.mark.parametrize("flags, says", [
    (["--gpus", "0"], "this target runs on the CPU (gpu = false in pyproject.toml): use "
                      "--workers N instead of --gpus"),
    (["--workers", "2", "--gpus", "all"], "--workers runs workers on the CPU and --gpus on "
                                          "GPUs: give one of them"),
    (["--ray", "auto"], "this target runs on the CPU (gpu = false in pyproject.toml): give "
                        "--ray with --workers N, the runs to hold at once on the cluster's CPUs"),
])
def test_a_cpu_target_refuses_gpu_flags_in_one_line(target_repo: Path, flags: list[str],
                                                     says: str) -> None:
    proc = run_cli("-C", ".", "run", "--tag", "t", "--agent", "sweep", *flags, cwd=target_repo)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [f"error: {says}"]
    assert not (target_repo / ".autoresearch").exists()


def zero_baseline(repo: Path, summary_line: bool) -> Path:
    """The toy target scoring exactly 0 on its unmodified code: JSON `0.0`, or with
    summary_line a summary block line `score: 0` (the metric then named score)."""
    (repo / "solve.py").write_text(set_constants((repo / "solve.py").read_text(), SCORE=0.0))
    if summary_line:
        evaluate = (repo / "evaluate.py").read_text()
        (repo / "evaluate.py").write_text(evaluate.replace(
            'print(f"accuracy: {score:.6f}")', 'print(f"score: {score:g}")'))
        table = (repo / "pyproject.toml").read_text()
        (repo / "pyproject.toml").write_text(table.replace('name = "accuracy"', 'name = "score"'))
    git(repo, "commit", "-q", "-am", "a baseline that scores 0")
    return repo


@pytest.mark.parametrize("summary_line", [False, True])
def test_a_metric_of_exactly_zero_is_a_value(tmp_path: Path, summary_line: bool) -> None:
    repo = zero_baseline(make_target_repo(tmp_path / "toy", json_file="" if summary_line
                                          else "scores.json"), summary_line)
    reason, _, _ = run_target(repo, [edit_solve("raise the score", SCORE=0.5)])
    assert reason == "reached --max-experiments 1"
    name = "score" if summary_line else "accuracy"
    lines = (repo / "results.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    cells = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert [(c["kind"], c["status"], float(c[name])) for c in cells] == [
        ("baseline", "keep", 0.0), ("experiment", "keep", 0.5), ("confirm", "keep", 0.5)]
    # the baseline's 0 is a measured value: the journal holds it and the keep's gain over it
    entries = {e.n: e for e in load_journal(repo / ".autoresearch" / "t" / "journal.jsonl")}
    assert entries[1].val_bpb == 0 and entries[2].delta == pytest.approx(-0.5)
    summary = " ".join(run_cli("-C", ".", "summary", cwd=repo).stdout.split())
    assert f"baseline {name} 0.000000" in summary and f"best {name} 0.500000" in summary


@pytest.mark.parametrize("json_file", ["", "scores.json"])
def test_the_extra_metrics_of_each_kept_run_show_in_the_journal_and_summary(
        tmp_path: Path, json_file: str) -> None:
    repo = make_target_repo(tmp_path / "toy", json_file=json_file)
    run_target(repo, [edit_solve("raise the score", SCORE=0.8), edit_solve("lower it", SCORE=0.7)])
    entries = load_journal(repo / ".autoresearch" / "t" / "journal.jsonl")
    # every run that reported it has it in its journal entry; a crash has none
    assert {e.n: e.extra for e in entries} == {n: {"fit_seconds": 0.25} for n in (1, 2, 3, 4)}
    summary = run_cli("-C", ".", "summary", cwd=repo)
    assert summary.returncode == 0, summary.stderr
    table = summary.stdout.split("top improvements", 1)[1]
    assert all(word in table for word in ("extras", "fit_seconds", "0.25"))
    as_json = json.loads(run_cli("-C", ".", "summary", "--json", cwd=repo).stdout)
    assert [i["extra"] for i in as_json["top_improvements"]] == [{"fit_seconds": 0.25}]
    journal = run_cli("-C", ".", "journal", "--full", cwd=repo).stdout
    assert re.search(r"#2 experiment w0 keep 0\.800000 \(\+0\.300000\) \(fit_seconds 0\.25\) "
                     r"raise the score", " ".join(journal.split()))
    # results.tsv keeps its columns: the extras live in the journal and the run folders
    assert "fit_seconds" not in (repo / "results.tsv").read_text().splitlines()[0]

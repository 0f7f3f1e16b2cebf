"""The shipped examples (examples/): each is a target repository of its own, copied out and
committed as its README says, then run as the loop runs it: its command, in its folder."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from loop_helpers import check_git_matches_results, git, run_cli, run_loop, set_constants, tag_rows
from target_helpers import edit_solve

from autoresearch.agents.sweep import moves
from autoresearch.execution.parse import read_target_run
from autoresearch.ledger.results import read_results
from autoresearch.memory.literals import find_constants
from autoresearch.target import LOSS, Metric, load_target

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DIGITS, COLLATZ = "digits-classifier", "collatz-speed"
EDITABLE = {DIGITS: "model.py", COLLATZ: "collatz.py"}
COMMAND = {DIGITS: "evaluate.py", COLLATZ: "benchmark.py"}
FAST_COLLATZ = {"BLOCK_SIZE": 16384.0, "COMPACT_FRAC": 0.5}  # same answers, a third of the time
TABLES = {
    DIGITS: (("evaluate.py",), Metric("accuracy", "higher", "", ("fit_seconds",))),
    COLLATZ: (("benchmark.py", "reference.json"),
              Metric("cpu_seconds", "lower", "", ("wall_seconds",))),
}


def copy_example(name: str, parent: Path) -> Path:
    """The example as its README sets it up: `cp -r`, `git init`, everything committed."""
    repo = parent / name
    shutil.copytree(EXAMPLES / name, repo, ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "user.name", "Test")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{name} target")
    return repo


def run_example(repo: Path) -> tuple[subprocess.CompletedProcess, dict[str, float] | None]:
    """The example's command (`python <harness>`) in its folder, as one run of the loop, and
    the loop's reading of it: the metrics of a usable run (the metric, its extra keys and the
    loss the loop compares), None for a crash."""
    proc = subprocess.run([sys.executable, COMMAND[repo.name]], cwd=repo, capture_output=True,
                          text=True, timeout=120)
    verdict = read_target_run(load_target(repo).metric, proc.returncode,
                              proc.stdout + proc.stderr, False, repo)
    return proc, verdict.metrics


def set_knobs(path: Path, **values: float) -> None:
    path.write_text(set_constants(path.read_text(), **values))


def test_digits_evaluator_prints_its_accuracy(tmp_path: Path) -> None:
    proc, values = run_example(copy_example(DIGITS, tmp_path))
    assert proc.returncode == 0 and values, proc.stderr
    assert set(values) == {LOSS, "accuracy", "fit_seconds"}
    assert 0.70 < values["accuracy"] < 0.77  # the weak start the README quotes: 0.735128
    assert values[LOSS] == -values["accuracy"] and values["fit_seconds"] > 0


def test_digits_accuracy_follows_the_editable_model(tmp_path: Path) -> None:
    """The evaluator scores model.py as it is in the run's folder: tuned knobs score higher."""
    repo = copy_example(DIGITS, tmp_path)
    set_knobs(repo / "model.py", PCA_VARIANCE_FRAC=0.8, SVM_C=1.0, RBF_GAMMA=0.001)
    proc, values = run_example(repo)
    assert values and values["accuracy"] > 0.95, proc.stderr


def test_collatz_benchmark_prints_its_seconds(tmp_path: Path) -> None:
    proc, values = run_example(copy_example(COLLATZ, tmp_path))
    assert proc.returncode == 0 and values, proc.stderr
    assert set(values) == {LOSS, "cpu_seconds", "wall_seconds"}
    assert values[LOSS] == values["cpu_seconds"] > 0 and values["wall_seconds"] > 0


WRONG_BUT_FAST = {
    "all zeros": "return np.zeros(n, dtype=np.int64)",
    "one number off": "steps[26:27] += 1\n    return steps",  # 27 takes 111 steps, not 112
}


@pytest.mark.parametrize("wrong", WRONG_BUT_FAST.values(), ids=WRONG_BUT_FAST.keys())
def test_collatz_fast_and_wrong_is_a_crash(tmp_path: Path, wrong: str) -> None:
    """A wrong answer exits non-zero with one line naming the case, and prints no metric."""
    repo = copy_example(COLLATZ, tmp_path)
    path = repo / "collatz.py"
    set_knobs(path, **FAST_COLLATZ)
    text = path.read_text()
    assert text.count("    return steps\n") == 1
    path.write_text(text.replace("    return steps\n", f"    {wrong}\n"))
    proc, values = run_example(repo)
    assert proc.returncode == 1 and values is None
    assert "---" not in proc.stdout and "cpu_seconds" not in proc.stdout
    assert re.fullmatch(r"error: stopping_times\(\d+\) is wrong: [^\n]*\n", proc.stderr)


def test_collatz_every_timed_call_is_checked(tmp_path: Path) -> None:
    """A call that is right for the small cases but wrong for the timed size is a crash too."""
    repo = copy_example(COLLATZ, tmp_path)
    path = repo / "collatz.py"
    set_knobs(path, **FAST_COLLATZ)
    text = path.read_text().replace("    return steps\n",
                                    "    return steps if n < 50_000 else steps * 0\n")
    path.write_text(text)
    proc, values = run_example(repo)
    assert proc.returncode == 1 and values is None
    assert "stopping_times(100000) is wrong" in proc.stderr


FORGE_REFERENCE = """
import hashlib as _hashlib, json as _json, pathlib as _pathlib
_forged = {n: {"sum": 0, "sha256": _hashlib.sha256(bytes(8 * int(n))).hexdigest()}
           for n in _json.loads(_pathlib.Path("reference.json").read_text())}
_pathlib.Path("reference.json").write_text(_json.dumps(_forged))
"""


def forge_reference(repo: Path) -> None:
    """collatz.py turned hostile: all zeros, and at import it rewrites reference.json to match."""
    path = repo / "collatz.py"
    text = path.read_text().replace("    return steps\n", "    return steps * 0\n")
    path.write_text(text + FORGE_REFERENCE)


def test_collatz_answers_are_checked_against_the_reference_read_before_they_run(
        tmp_path: Path) -> None:
    """The harness reads the right answers before collatz.py runs, so forging them on the
    way fails the run (the loop also voids any run that changes a fixed file)."""
    repo = copy_example(COLLATZ, tmp_path)
    forge_reference(repo)
    proc, values = run_example(repo)
    assert proc.returncode == 1 and values is None
    assert "stopping_times(1) is wrong" not in proc.stderr
    assert re.fullmatch(r"error: stopping_times\(2\) is wrong: [^\n]*\n", proc.stderr)
    assert set(git(repo, "diff", "--name-only").split()) == {"collatz.py", "reference.json"}


def plain_stopping_times(n: int) -> np.ndarray:
    """Collatz stopping times of 1..n by the definition, memoising every number met."""
    known = {1: 0}
    for start in range(2, n + 1):
        path, x = [], start
        while x not in known:
            path.append(x)
            x = x // 2 if x % 2 == 0 else 3 * x + 1
        for count, value in enumerate(reversed(path), start=known[x] + 1):
            known[value] = count
    return np.array([known[i] for i in range(1, n + 1)], dtype=np.int64)


def test_collatz_reference_answers_are_right() -> None:
    reference = json.loads((EXAMPLES / COLLATZ / "reference.json").read_text())
    sizes = sorted(int(n) for n in reference)
    assert sizes == [1, 2, 27, 1000, 4097, 100_000]
    answers = plain_stopping_times(sizes[-1])
    assert answers[26] == 111  # 27's famous 111 steps
    for n in sizes:
        expected = {"sum": int(answers[:n].sum()),
                    "sha256": hashlib.sha256(answers[:n].tobytes()).hexdigest()}
        assert reference[str(n)] == expected, n


@pytest.mark.parametrize("name", [DIGITS, COLLATZ])
def test_every_knob_is_one_the_sweep_moves(name: str) -> None:
    """The editable file's UPPER_CASE constants are all knobs the sweep agent can move (an int
    knob, say, it would leave alone), each from its starting value."""
    constants = find_constants((EXAMPLES / name / EDITABLE[name]).read_text())
    assert constants, "no knobs"
    for constant in constants.values():
        assert moves(constant, constants, 2), constant.name


@pytest.mark.parametrize("name", [DIGITS, COLLATZ])
def test_each_example_declares_its_target(name: str) -> None:
    """The table loads as the loop loads it: a CPU target whose files all exist, the editable
    file and the harness the tests above run, the metric its harness prints."""
    target = load_target(EXAMPLES / name)
    fixed, metric = TABLES[name]
    assert target.custom and not target.gpu
    assert target.editable == (EDITABLE[name],) and target.fixed == fixed
    assert target.command == ("python", COMMAND[name]) and target.metric == metric
    for file in (*target.editable, *target.fixed, target.program, ".gitignore", "README.md"):
        assert (EXAMPLES / name / file).is_file(), file


# ---- the whole loop on each example: the real CLI, the sweep agent, two CPU workers


def sweep_on_two_workers(repo: Path, experiments: int) -> tuple[list[tuple[str, str, float]],
                                                                    float]:
    """`agent_loop.py run` with the sweep on two CPU workers, as the example's README has it,
    from the example's folder; checks what every such night must hold (both workers ran, the
    metric column is named by the metric, git holds the kept line) and returns (kind, status,
    the metric's own value) of each row of results.tsv, and the baseline's value."""
    proc = run_cli("run", "-C", ".", "--tag", "t", "--agent", "sweep", "--workers", "2",
                   "--plain", "--max-experiments", str(experiments), cwd=repo, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"reached --max-experiments {experiments}" in proc.stdout
    metric = load_target(repo).metric
    header = (repo / "results.tsv").read_text().split("\n", 1)[0].split("\t")
    assert header[:2] == ["commit", metric.name]
    assert {r.worker for r in tag_rows(repo)} == {0, 1}
    check_git_matches_results(repo)
    rows = [(r.kind, r.status, metric.value(r.val_bpb))
            for r in read_results(repo / "results.tsv", metric=metric)]
    (baseline,) = [value for kind, _, value in rows if kind == "baseline"]
    return rows, baseline


def kept_experiments(rows: list[tuple[str, str, float]]) -> list[float]:
    return [value for kind, status, value in rows if kind == "experiment" and status == "keep"]


@pytest.mark.slow
def test_the_sweep_raises_the_digits_accuracy_with_two_workers(tmp_path: Path) -> None:
    """Higher is better end to end: the sweep keeps higher accuracies, and the branch it leaves
    scores, run again, the highest accuracy kept (the metric is deterministic)."""
    repo = copy_example(DIGITS, tmp_path)
    rows, baseline = sweep_on_two_workers(repo, 4)
    assert 0.70 < baseline < 0.77
    kept = kept_experiments(rows)
    assert kept and all(value > baseline for value in kept)
    git(repo, "checkout", "-q", "autoresearch/t")
    _, values = run_example(repo)
    assert values
    rerun = values["accuracy"]
    assert rerun == max(value for _, status, value in rows if status == "keep") > baseline


@pytest.mark.slow
def test_the_sweep_speeds_up_collatz_with_two_workers(tmp_path: Path) -> None:
    """Lower is better end to end: every keep ran faster than the baseline, and every run of
    the sweep's moves was correct (no crash)."""
    repo = copy_example(COLLATZ, tmp_path)
    rows, baseline = sweep_on_two_workers(repo, 3)
    assert all(status != "crash" for _, status, _ in rows)
    assert all(value < baseline for value in kept_experiments(rows))


@pytest.mark.slow
def test_a_hostile_agent_cannot_change_an_examples_harness_or_answers(tmp_path: Path) -> None:
    """Edits to benchmark.py or reference.json are refused before anything runs; a collatz.py
    that forges reference.json while it runs is void; neither is ever kept."""
    repo = copy_example(COLLATZ, tmp_path)
    answers = json.dumps({"100000": {"sum": 0, "sha256": "0" * 64}})
    timer = "print('---')\nprint('cpu_seconds: 0.001')\n"

    def forge_while_running(request):
        forge_reference(request.repo)
        return edit_solve("forges the answers at import")(request)

    steps = [edit_solve("a faster timer", also={"benchmark.py": timer}, BLOCK_SIZE=1024.0),
             edit_solve("easier answers", also={"reference.json": answers}, BLOCK_SIZE=1024.0),
             forge_while_running]
    _, _, ui = run_loop(repo, steps, target=load_target(repo), timeout=None, max_experiments=1)
    rejected = [e for e in ui.events if "proposal rejected" in e]
    assert len(rejected) == 2
    assert "benchmark.py" in rejected[0] and "reference.json" in rejected[1]
    assert [(r.kind, r.status, r.reason) for r in tag_rows(repo)] == [
        ("baseline", "keep", ""), ("experiment", "crash", "tamper")]
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "autoresearch/t") == git(repo, "rev-parse", "HEAD")


# its two halves stay in the quick run: the harness's non-zero exit for a wrong answer
# (test_collatz_fast_and_wrong_is_a_crash) and a target run's non-zero exit as a crash row
# (test_target_loop)
@pytest.mark.slow
def test_fast_and_wrong_is_a_crash_in_the_loop_never_a_keep(tmp_path: Path) -> None:
    """The loop records the harness's refusal as a crash (its log says why) and keeps nothing."""
    repo = copy_example(COLLATZ, tmp_path)

    def skip_the_work(request):
        path = request.repo / "collatz.py"
        path.write_text(path.read_text().replace("    return steps\n", "    return steps * 0\n"))
        return edit_solve("fast knobs, and skip the work", **FAST_COLLATZ)(request)

    run_loop(repo, [skip_the_work], target=load_target(repo), timeout=None, max_fix_attempts=0)
    rows = tag_rows(repo)
    assert [(r.kind, r.status) for r in rows] == [("baseline", "keep"), ("experiment", "crash")]
    assert "is wrong" in (repo / rows[1].run_dir / "run.log").read_text()
    check_git_matches_results(repo)

"""Any target: a repository's [tool.autoresearch] table, read into one Target record."""

from __future__ import annotations

from pathlib import Path

import pytest
from loop_helpers import git, make_repo, run_cli

from autoresearch.errors import UserError
from autoresearch.execution.parse import read_target_run
from autoresearch.target import DEFAULT, Metric, load_target, target_to_run

TABLE = """
[tool.autoresearch]
editable = ["solve.py"]
fixed = ["evaluate.py"]
command = "python evaluate.py --fast"
timeout = 120
setup = "python make_data.py"
gpu = false

[tool.autoresearch.metric]
name = "accuracy"
direction = "higher"
file = "metrics.json"
extra = ["fit_seconds"]
"""


def write_table(repo: Path, text: str, files: tuple[str, ...] = ("solve.py", "model.py",
                                                                  "features.py")) -> Path:
    """pyproject.toml with `text`, beside the files a table may name as editable."""
    (repo / "pyproject.toml").write_text('[project]\nname = "t"\n' + text)
    for name in files:
        (repo / name).write_text("X = 1\n")
    return repo


def test_no_table_is_the_llm_harness(tmp_path: Path) -> None:
    assert load_target(tmp_path) == DEFAULT
    assert load_target(write_table(tmp_path, "")) == DEFAULT
    assert DEFAULT.edited == "train.py"
    assert DEFAULT.fixed == ("prepare.py", "constants.py", "harness.py")
    assert DEFAULT.metric == Metric("val_bpb", "lower") and not DEFAULT.custom


def test_the_repository_own_pyproject_declares_no_target() -> None:
    assert load_target(Path(__file__).resolve().parent.parent) == DEFAULT


def test_a_full_table_loads(tmp_path: Path) -> None:
    target = load_target(write_table(tmp_path, TABLE))
    assert target.custom and target.edited == "solve.py"
    assert target.fixed == ("evaluate.py",)
    assert target.command == ("python", "evaluate.py", "--fast")
    assert target.setup == ("python", "make_data.py")
    assert target.timeout == 120.0 and target.gpu is False and target.program == "program.md"
    assert target.metric == Metric("accuracy", "higher", "metrics.json", ("fit_seconds",))


@pytest.mark.parametrize("direction, value, loss", [("lower", 2.5, 2.5), ("higher", 0.9, -0.9)])
def test_the_loss_is_lower_is_better_and_turns_back(direction: str, value: float,
                                                     loss: float) -> None:
    metric = Metric("m", direction)
    assert metric.loss(value) == loss and metric.value(metric.loss(value)) == value


@pytest.mark.parametrize("zero", [0.0, -0.0])
def test_a_value_of_zero_reads_as_zero_never_minus_zero(zero: float) -> None:
    metric = Metric("accuracy", "higher")
    for number in (metric.loss(zero), metric.value(zero), metric.value(sum([metric.loss(zero)]))):
        assert f"{number:.6f}" == "0.000000"


@pytest.mark.parametrize("change, says", [
    (('timeout = 120', 'timeout = -1'), "timeout is -1: use e.g. 120"),
    (('timeout = 120', 'timeout = "2m"'), "timeout is '2m': use e.g. 120"),
    (('timeout = 120\n', ''), "timeout is missing: use e.g. 120"),
    (('direction = "higher"', 'direction = "up"'),
     'metric.direction is \'up\': use e.g. "higher"'),
    (('editable = ["solve.py"]', 'editable = 3'), "editable is 3"),
    (('editable = ["solve.py"]', 'editable = []'), "editable is []"),
    (('editable = ["solve.py"]', 'editable = ["model.py", "gone.py"]'),
     "editable names 'gone.py', which is not a file of the repository"),
    (('editable = ["solve.py"]', 'editable = ["model.py", "../features.py"]'),
     "editable is ['model.py', '../features.py']"),
    (('editable = ["solve.py"]', 'editable = ["model.py", "./model.py"]'),
     "editable lists model.py twice: use e.g. each file once"),
    (('editable = ["solve.py"]', 'editable = ["model.py", "evaluate.py"]'),
     "fixed also lists editable evaluate.py"),
    (('fixed = ["evaluate.py"]', 'fixed = ["solve.py"]'), "fixed also lists editable solve.py"),
    (('fixed = ["evaluate.py"]', 'fixed = ["../evaluate.py"]'), "fixed is ['../evaluate.py']"),
    (('command = "python evaluate.py --fast"', 'command = "python \'evaluate.py"'),
     "command does not split as a command line"),
    (('gpu = false', 'gpus = 2'), "unknown key 'gpus'; the keys are editable, fixed"),
    (('name = "accuracy"', 'name = "val acc"'), "metric.name is 'val acc'"),
    (('[tool.autoresearch.metric]', '[tool.autoresearch.metrics]'), "unknown key 'metrics'"),
])
def test_a_bad_table_is_one_line_naming_the_key(tmp_path: Path, change: tuple[str, str],
                                                 says: str) -> None:
    write_table(tmp_path, TABLE.replace(*change))
    with pytest.raises(UserError) as caught:
        target_to_run(tmp_path)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert message.startswith("pyproject.toml [tool.autoresearch")


def test_one_editable_file_or_several(tmp_path: Path) -> None:
    one = load_target(write_table(tmp_path, TABLE.replace('["solve.py"]', '"solve.py"')))
    assert one.editable == ("solve.py",) and one.edited == "solve.py"
    two = load_target(write_table(tmp_path, TABLE.replace('["solve.py"]',
                                                          '["model.py", "./features.py"]')))
    assert two.editable == ("model.py", "features.py") and two.edited == "model.py"


def test_an_editable_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "outside.py").write_text("X = 1\n")
    (repo / "link.py").symlink_to(tmp_path / "outside.py")
    write_table(repo, TABLE.replace('["solve.py"]', '["solve.py", "link.py"]'))
    with pytest.raises(UserError, match="editable names 'link.py', which lies outside the "
                                        "repository"):
        target_to_run(repo)
    assert load_target(repo).editable == ("solve.py", "link.py")  # what the review commands read


@pytest.mark.parametrize("change, says", [
    (('direction = "higher"', 'direction = "more"'),
     'metric.direction is \'more\': use e.g. "higher"'),
    (('editable = ["solve.py"]', 'editable = ["solve.py", "gone.py"]'),
     "editable names 'gone.py', which is not a file of the repository (create and commit it, "
     'or fix the name): use e.g. ["model.py", "features.py"]'),
])
def test_the_cli_says_a_bad_table_in_one_line_before_anything_starts(
        tmp_path: Path, change: tuple[str, str], says: str) -> None:
    repo = make_repo(tmp_path / "repo")
    write_table(repo, TABLE.replace(*change))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a target")
    proc = run_cli("-C", ".", "run", "--tag", "t", "--agent", "sweep", cwd=repo)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: pyproject.toml [tool.autoresearch] {says}"]
    assert "Traceback" not in proc.stderr and not (repo / ".autoresearch").exists()


def test_the_readme_example_table_loads_as_documented(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Your own target", 1)[1]
    table = section.split("```toml\n", 1)[1].split("```", 1)[0]
    target = load_target(write_table(tmp_path, table))
    assert target.custom and target.editable == ("model.py", "features.py")
    assert target.fixed == ("evaluate.py", "reference.npz")
    assert target.command == ("python", "evaluate.py") and target.timeout == 120
    assert target.setup == ("python", "make_data.py") and target.gpu is False
    assert target.metric == Metric("accuracy", "higher", "metrics.json", ("fit_seconds",))


ACCURACY = Metric("accuracy", "higher", extra=("fit_seconds",))


@pytest.mark.parametrize("log, returncode, reason, value", [
    ("---\naccuracy: 0.9\nfit_seconds: 2\n", 0, "", 0.9),
    ("---\naccuracy: 0.1\n---\nfit_seconds: 2\naccuracy: 0.8\nlater: text\n", 0, "", 0.8),
    ("accuracy: 0.9\n", 0, "other", None),  # not in a summary block: never trusted
    ("---\nfit_seconds: 2\n", 0, "other", None),  # exit 0 without the metric: a crash
    ("---\naccuracy: nan\n", 0, "nan", None),
    ("---\naccuracy: 0.9\n", 1, "other", None),  # a non-zero exit is a crash, whatever it said
])
def test_a_target_run_is_judged_by_its_metric(tmp_path: Path, log: str, returncode: int,
                                              reason: str, value: float | None) -> None:
    verdict = read_target_run(ACCURACY, returncode, log, False, tmp_path)
    assert verdict.reason == reason
    if value is None:
        assert verdict.metrics is None
    else:
        assert verdict.metrics == {"val_bpb": -value, "accuracy": value, "fit_seconds": 2.0}


def test_a_json_metric_file_is_read_and_a_bad_one_is_a_crash(tmp_path: Path) -> None:
    metric = Metric("seconds", "lower", file="out.json")
    (tmp_path / "out.json").write_text('{"seconds": 1.5, "label": "fast", "ok": true}')
    assert read_target_run(metric, 0, "", False, tmp_path).metrics == {"val_bpb": 1.5,
                                                                       "seconds": 1.5}
    (tmp_path / "out.json").write_text('[1.5]')
    assert read_target_run(metric, 0, "", False, tmp_path).reason == "other"
    assert read_target_run(metric, None, "", True, tmp_path).reason == "timeout"

"""A throwaway target repository of its own ([tool.autoresearch]): solve.py is what agents edit
(its constants decide the score), evaluate.py, reference.txt and the binary answers.bin are the
fixed harness, and the metric is `accuracy`, higher is better, printed in the summary block (or
written to a JSON file)."""

from __future__ import annotations

from pathlib import Path

from loop_helpers import GITIGNORE, git, set_constants

from autoresearch.agents import AgentRequest, Proposal, Usage

SOLVE = '''"""A toy solution: its constants decide the score."""

SCORE = 0.5  # the accuracy evaluate.py reports
MODE = "ok"  # ok crash tamper
'''

EVALUATE = '''"""The fixed harness: runs solve.py and reports its accuracy."""
import json
import os
import runpy

# the loop names the repository root, where a setup command leaves what runs read
assert os.path.isfile(os.path.join(os.environ["AUTORESEARCH_TARGET"], "pyproject.toml"))

values = runpy.run_path("solve.py")
if values["MODE"] == "crash":
    raise SystemExit("solve.py failed")
if values["MODE"] == "tamper":
    with open("reference.txt", "a") as f:
        f.write("the answers, changed\\n")
assert open("reference.txt").read() == "the answers\\n"
score = values["SCORE"]
if JSON_FILE:
    with open(JSON_FILE, "w") as f:
        json.dump({"accuracy": score, "fit_seconds": 0.25, "note": "text is ignored"}, f)
else:
    print("fitting ...")
    print("---")
    print(f"accuracy: {score:.6f}")
    print("fit_seconds: 0.25")
'''

ANSWERS = bytes(range(256))  # not UTF-8: git show as text would fail on it

TABLE = '''[project]
name = "toy-target"

[tool.autoresearch]
editable = ["solve.py"]
fixed = ["evaluate.py", "reference.txt", "answers.bin"]
command = "python evaluate.py"
timeout = 60
gpu = false

[tool.autoresearch.metric]
name = "accuracy"
direction = "higher"
extra = ["fit_seconds"]
'''


def make_target_repo(path: Path, json_file: str = "") -> Path:
    """The toy target, committed on branch main; with json_file its metric comes from that
    JSON file instead of the summary block."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    (path / "solve.py").write_text(SOLVE)
    (path / "evaluate.py").write_text(f"JSON_FILE = {json_file!r}\nANSWERS = {ANSWERS!r}\n"
                                      + EVALUATE)
    (path / "reference.txt").write_text("the answers\n")
    (path / "answers.bin").write_bytes(ANSWERS)
    table = TABLE + (f'file = "{json_file}"\n' if json_file else "")
    (path / "pyproject.toml").write_text(table)
    (path / "program.md").write_text("# program\nRaise accuracy.\n")
    (path / ".gitignore").write_text(GITIGNORE)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "a target of its own")
    return path


def edit_solve(description: str, also: dict[str, str] | None = None, **values: object):
    """An agent step: set constants of the target's editable file (and write `also`, other
    files of its work tree, as a hostile agent would)."""
    def step(request: AgentRequest) -> Proposal:
        path = request.repo / request.target.edited
        path.write_text(set_constants(path.read_text(), **values))
        for name, text in (also or {}).items():
            (request.repo / name).write_text(text)
        return Proposal(description, Usage(cost_usd=0.01))
    return step


MODEL = '''"""The model: WEIGHT decides half of the score."""

WEIGHT = 0.5  # the closer to 0.8, the better
'''

FEATURES = '''"""The features: SCALE decides the other half."""

SCALE = 1.0  # the closer to 2.0, the better
'''

SCORE_BOTH = '''"""The fixed harness: scores the model and its features together."""
import features
import model

print("---")
print(f"accuracy: {1 - abs(model.WEIGHT - 0.8) - abs(features.SCALE - 2.0) / 4:.6f}")
'''

TWO_FILES = TABLE.replace('editable = ["solve.py"]', 'editable = ["model.py", "features.py"]') \
    .replace('fixed = ["evaluate.py", "reference.txt", "answers.bin"]', 'fixed = ["evaluate.py"]')


def make_two_file_repo(path: Path) -> Path:
    """A target whose agents edit two files, model.py and features.py: the score of the fixed
    evaluate.py (accuracy, higher is better) rises as either file's constant nears its best."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    for name, text in (("model.py", MODEL), ("features.py", FEATURES),
                       ("evaluate.py", SCORE_BOTH), ("pyproject.toml", TWO_FILES),
                       ("program.md", "# program\nRaise accuracy.\n"), (".gitignore", GITIGNORE)):
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "a target with two editable files")
    return path

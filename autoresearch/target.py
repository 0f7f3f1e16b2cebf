"""What the loop optimises: the target a repository declares in its pyproject.toml.

A target repository names, under `[tool.autoresearch]`, the file or files agents edit, the fixed
files the
loop guards, the command that runs one experiment, its timeout, and the metric it reports. A
repository without the table is today's LLM-pretraining harness (train.py, prepare.py and
constants.py, `python train.py`, val_bpb lower is better), so `load_target` of this checkout
gives DEFAULT and nothing changes for it.

Direction lives in one place, `Metric`: the loop keeps a loss (lower is better) wherever it
compares, and turns it back into the metric's own value wherever a human reads it.
"""

from __future__ import annotations

import math
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.names import FIXED_FILES

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser under its old name
    import tomli as tomllib

PYPROJECT = "pyproject.toml"
# The key of a run's metrics that holds the loss the loop compares (policy.py reads it): for the
# default target it is val_bpb itself, for any other the metric's loss (Metric.loss)
LOSS = "val_bpb"
TABLE = "tool.autoresearch"
DIRECTIONS = ("lower", "higher")
# Set for a target's runs: the repository root, where its setup left what the runs read
TARGET_ENV = "AUTORESEARCH_TARGET"


@dataclass(frozen=True)
class Metric:
    """The number a run reports and which way is better; the one place direction lives.

    `loss(value)` is what the loop compares (lower is better); `value(loss)` is what a human
    reads. For a lower-is-better metric both are the identity."""

    name: str = "val_bpb"
    direction: str = "lower"
    file: str = ""  # a JSON object the run writes in its folder; "" = the summary block
    extra: tuple[str, ...] = ()  # more keys recorded per run

    def loss(self, value: float) -> float:
        # 0.0 - x, not -x: a value of exactly 0 must never turn into -0.0 and read "-0.000000"
        return value if self.direction == "lower" else 0.0 - value

    def value(self, loss: float) -> float:
        return loss if self.direction == "lower" else 0.0 - loss

    @property
    def label(self) -> str:
        """How views name it: `accuracy (higher is better)`."""
        return f"{self.name} ({self.direction} is better)"


@dataclass(frozen=True)
class Target:
    """One target repository's declaration (see the module docstring); DEFAULT without one."""

    editable: tuple[str, ...] = ("train.py",)
    fixed: tuple[str, ...] = FIXED_FILES
    command: tuple[str, ...] = ()  # () = the harness's own train command (config.Options)
    timeout: float | None = None  # None = 2 x TIME_BUDGET + margin (config.Harness)
    setup: tuple[str, ...] = ()
    program: str = "program.md"
    gpu: bool = True
    metric: Metric = field(default_factory=Metric)
    custom: bool = False  # declared in pyproject.toml (not the built-in LLM harness)

    @property
    def edited(self) -> str:
        """The first file agents edit: the one the default target has (train.py), and the one an
        edit that names no file applies to when there is only one."""
        return self.editable[0]


DEFAULT = Target()


def listed(names: Iterable[str]) -> str:
    """File names as a sentence names them: `a.py`, `a.py and b.py`, `a.py, b.py and c.py`."""
    names = list(names)
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else ""

# key -> (what it must be, an example of a right value), for one-line errors
_KEYS = {
    "editable": ("a file name or a list of them", '["model.py", "features.py"]'),
    "fixed": ("a list of file names", '["evaluate.py"]'),
    "command": ("a command line", '"python evaluate.py"'),
    "timeout": ("seconds above 0", "120"),
    "setup": ("a command line", '"python make_data.py"'),
    "program": ("a file name", '"program.md"'),
    "gpu": ("true or false", "false"),
    "metric": ("a table", '[tool.autoresearch.metric] name = "accuracy"'),
}
_METRIC_KEYS = {
    "name": ("a summary key or JSON key", '"accuracy"'),
    "direction": ('"lower" or "higher"', '"higher"'),
    "file": ("a file name the run writes", '"metrics.json"'),
    "extra": ("a list of key names", '["fit_seconds"]'),
}


def load_target(repo: Path) -> Target:
    """The target declared in repo/pyproject.toml, or DEFAULT when it declares none.
    A bad table raises UserError naming the key, what is wrong and what would be right."""
    path = Path(repo) / PYPROJECT
    if not path.is_file():
        return DEFAULT
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{PYPROJECT} does not parse ({e}): fix its TOML syntax") from None
    table = data.get("tool", {}).get("autoresearch")
    if table is None:
        return DEFAULT
    if not isinstance(table, dict):
        raise _bad("", "is not a table", "[tool.autoresearch]")
    return parse_target(table)


def target_to_run(repo: Path) -> Target:
    """The target `run` runs: load_target's, each editable file checked to be a file of the
    repository and inside it (a symlink out of it is not); else UserError naming it. (Review
    commands read the table alone: a results folder copied elsewhere has no code.)"""
    target = load_target(repo)
    root = Path(repo).resolve()
    for name in target.editable if target.custom else ():  # train.py: tags.py says it
        path = root / name
        if not path.resolve().is_relative_to(root):
            raise _bad("editable", f"names {name!r}, which lies outside the repository",
                       _KEYS["editable"][1])
        if not path.is_file():
            raise _bad("editable", f"names {name!r}, which is not a file of the repository "
                       f"(create and commit it, or fix the name)", _KEYS["editable"][1])
    return target


def metric_beside(results: Path) -> Metric:
    """The metric of a results.tsv: the one declared by the pyproject.toml beside it (the
    target's root, where the loop writes it), val_bpb without one."""
    return load_target(Path(results).parent).metric


def parse_target(table: dict) -> Target:
    """A `[tool.autoresearch]` table as a validated Target (UserError on the first bad key)."""
    _no_unknown(table, _KEYS, TABLE)
    for key in ("editable", "command", "timeout"):
        if key not in table:
            raise _bad(key, "is missing", _KEYS[key][1])
    editable = _files(table, "editable")
    fixed = _files(table, "fixed") if "fixed" in table else ()
    if both := set(editable) & set(fixed):
        raise _bad("fixed", f"also lists editable {', '.join(sorted(both))}",
                   "each file either editable or fixed")
    timeout = table["timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
            not math.isfinite(timeout) or timeout <= 0:
        raise _bad("timeout", f"is {timeout!r}", _KEYS["timeout"][1])
    gpu = table.get("gpu", True)
    if not isinstance(gpu, bool):
        raise _bad("gpu", f"is {gpu!r}", _KEYS["gpu"][1])
    program = table.get("program", "program.md")
    if not isinstance(program, str) or not _plain_file(program):
        raise _bad("program", f"is {program!r}", _KEYS["program"][1])
    return Target(editable=editable, fixed=fixed, command=_command(table, "command"),
                  timeout=float(timeout),
                  setup=_command(table, "setup") if "setup" in table else (),
                  program=program, gpu=gpu, metric=_metric(table.get("metric")), custom=True)


def _metric(table: object) -> Metric:
    if table is None:
        raise _bad("metric", "is missing", _KEYS["metric"][1])
    if not isinstance(table, dict):
        raise _bad("metric", "is not a table", _KEYS["metric"][1])
    _no_unknown(table, _METRIC_KEYS, f"{TABLE}.metric")
    name = table.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise _bad("metric.name", "is missing" if name is None else f"is {name!r}",
                   _METRIC_KEYS["name"][1])
    direction = table.get("direction")
    if direction not in DIRECTIONS:
        raise _bad("metric.direction", "is missing" if direction is None else
                   f"is {direction!r}", _METRIC_KEYS["direction"][1])
    file = table.get("file", "")
    if not isinstance(file, str) or (file and not _plain_file(file)):
        raise _bad("metric.file", f"is {file!r}", _METRIC_KEYS["file"][1])
    extra = table.get("extra", [])
    if not isinstance(extra, list) or not all(isinstance(k, str) and k.isidentifier()
                                              for k in extra):
        raise _bad("metric.extra", f"is {extra!r}", _METRIC_KEYS["extra"][1])
    return Metric(name, direction, file, tuple(k for k in extra if k != name))


def _files(table: dict, key: str) -> tuple[str, ...]:
    """A list of paths inside the repository, each once; `editable` may also be one path."""
    value = table[key]
    names = [value] if key == "editable" and isinstance(value, str) else value
    if not isinstance(names, list) or not names or \
            not all(isinstance(v, str) and _plain_file(v) for v in names):
        raise _bad(key, f"is {value!r}", _KEYS[key][1] + " (paths inside the repository)")
    normal = [Path(name).as_posix() for name in names]  # "./a.py" and "a.py" are one file
    if twice := sorted({name for name in normal if normal.count(name) > 1}):
        raise _bad(key, f"lists {', '.join(twice)} twice", "each file once")
    return tuple(normal)


def _command(table: dict, key: str) -> tuple[str, ...]:
    value = table[key]
    try:
        words = shlex.split(value) if isinstance(value, str) else []
    except ValueError as e:
        raise _bad(key, f"does not split as a command line ({e})", _KEYS[key][1]) from None
    if not words:
        raise _bad(key, f"is {value!r}", _KEYS[key][1])
    return tuple(words)


def _plain_file(name: str) -> bool:
    """A relative path inside the repository (no `..`, not absolute)."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def _no_unknown(table: dict, known: dict, where: str) -> None:
    for key in table:
        if key not in known:
            raise UserError(f"{PYPROJECT} [{where}]: unknown key {key!r}; the keys are "
                            f"{', '.join(known)}")


def _bad(key: str, problem: str, right: str) -> UserError:
    where = f" {key}" if key else ""
    return UserError(f"{PYPROJECT} [{TABLE}]{where} {problem}: use e.g. {right}")


def run_setup(repo: Path, target: Target) -> None:
    """Run the target's setup command once, in the repository root, within its timeout;
    a failure is one line quoting the command's own last error line."""
    shown = shlex.join(target.setup)
    try:
        proc = subprocess.run(target.setup, cwd=repo, capture_output=True, text=True,
                              timeout=target.timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError(f"setup `{shown}`: {target.setup[0]} not found: fix [tool.autoresearch] "
                        f"setup in {PYPROJECT}") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"setup `{shown}` ran past the timeout ({target.timeout:g} s): make it "
                        f"faster or raise timeout in {PYPROJECT}") from None
    if proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise UserError(f"setup `{shown}` failed (exit {proc.returncode})"
                        + (f": {said[-1][:300]}" if said else "") + "; fix it, then run again")

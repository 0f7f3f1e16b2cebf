"""The top-level constants of a train.py: `NAME = literal` lines, their values and where they are.

One reader for everyone who looks at the knobs: the sweep agent rewrites them in place, the
journal records what ran and the change summaries name the ones that moved. A target with several
editable files has the knobs of all of them, each named `path:NAME` (constants_of).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")  # ALL_CAPS names are the file's tunables


@dataclass
class Constant:
    name: str
    value: object  # the evaluated literal
    text: str  # its source text
    line: int  # 0-based line index
    start: int  # character span of the value within the line
    end: int
    file: str = ""  # the editable file it is in (constants_of); its name is `file:NAME` when
    # the program has several files

    @property
    def bare(self) -> str:
        """Its name in its file: what says what kind of knob it is (`MATRIX_LR`)."""
        return self.name.rpartition(":")[2]


def qualified(path: str, name: str) -> str:
    """A name (a constant, a change) within one file of a program of several: `path:NAME`."""
    return f"{path}:{name}"


def constants_of(files: Mapping[str, str]) -> dict[str, Constant]:
    """find_constants of each file of a program, by path; a program of several files names
    each `path:NAME`, one file keeps the bare names. A file that does not parse has none."""
    found: dict[str, Constant] = {}
    for path, text in files.items():
        try:
            mine = find_constants(text)
        except (SyntaxError, ValueError):
            continue
        for name, c in mine.items():
            key = qualified(path, name) if len(files) > 1 else name
            found[key] = replace(c, name=key, file=path)
    return found


def find_constants(text: str) -> dict[str, Constant]:
    """Top-level `NAME = literal` assignments; names assigned twice at top level are ambiguous
    (which one wins?) and left alone, as are nested ones such as a per-profile override block.
    Raises SyntaxError when the text does not parse."""
    lines = text.splitlines(keepends=True)
    found: dict[str, Constant] = {}
    seen: set[str] = set()
    for node in ast.parse(text).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        name, value = node.targets[0].id, node.value
        if not NAME_RE.fullmatch(name):
            continue
        if name in seen:
            found.pop(name, None)
            continue
        seen.add(name)
        try:
            evaluated = _literal(value)
        except ValueError:
            continue
        if value.lineno != value.end_lineno:
            continue
        line = lines[value.lineno - 1]
        start, end = _char(line, value.col_offset), _char(line, value.end_col_offset)
        found[name] = Constant(name, evaluated, line[start:end], value.lineno - 1, start, end)
    return found


def _literal(node: ast.expr) -> object:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):  # TOTAL_BATCH_SIZE = 2**19
        base, exponent = _literal(node.left), _literal(node.right)
        if type(base) is int and type(exponent) is int and 0 <= exponent < 64:
            return base**exponent
        raise ValueError("not a constant power")
    value = ast.literal_eval(node)
    if isinstance(value, bool) or not isinstance(value, (int, float, str, tuple)):
        raise ValueError("not a tunable literal")
    return value


def _char(line: str, byte_offset: int) -> int:
    """ast reports UTF-8 byte offsets; slicing needs character offsets."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8"))


def profile_overrides(text: str, profile: str) -> list[str]:
    """The top-level constants that a train.py replaces for a harness profile ("cpu",
    "h100@45s" reads as "h100"), in file order: what an edit of their top-level line cannot
    change. They are read from the file's `if PROFILE == "...":` / `elif` / `else` blocks. A
    constant the block scales from itself (`BATCH = BATCH // 4`) still follows its line and is
    not one of them. Raises SyntaxError when the text does not parse."""
    name = profile.partition("@")[0]
    found: list[str] = []
    for node in ast.parse(text).body:
        for statement in _branch_for(node, name):
            for target, value in _assignments(statement):
                if NAME_RE.fullmatch(target) and not _mentions(value, target) \
                        and target not in found:
                    found.append(target)
    return found


def _branch_for(node: ast.stmt, profile: str) -> list[ast.stmt]:
    """The statements an `if PROFILE == ...` chain runs for a profile; [] for anything else."""
    if not (isinstance(node, ast.If) and _profile_test(node.test) is not None):
        return []
    while True:
        if profile in _profile_test(node.test):
            return node.body
        chained = node.orelse[0] if len(node.orelse) == 1 else None
        if isinstance(chained, ast.If) and _profile_test(chained.test) is not None:
            node = chained
            continue
        return node.orelse


def _profile_test(test: ast.expr) -> set[str] | None:
    """The profiles `PROFILE == "cpu"` or `PROFILE in ("cpu", "consumer")` selects; None when
    the test is not about PROFILE."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.left, ast.Name) and test.left.id == "PROFILE"):
        return None
    try:
        value = ast.literal_eval(test.comparators[0])
    except ValueError:
        return None
    if isinstance(test.ops[0], ast.Eq) and isinstance(value, str):
        return {value}
    if isinstance(test.ops[0], ast.In) and isinstance(value, (tuple, list, set)):
        return {v for v in value if isinstance(v, str)}
    return None


def _assignments(statement: ast.stmt) -> list[tuple[str, ast.expr]]:
    """(name, the expression it gets) for `A = x` and `A, B = x, y`; an augmented assignment
    (`A //= 4`) scales the constant and is not one."""
    if not isinstance(statement, ast.Assign):
        return []
    pairs = []
    for target in statement.targets:
        if isinstance(target, ast.Name):
            pairs.append((target.id, statement.value))
        elif isinstance(target, ast.Tuple):
            values = statement.value
            spread = isinstance(values, ast.Tuple) and len(values.elts) == len(target.elts)
            pairs += [(t.id, values.elts[i] if spread else values)
                      for i, t in enumerate(target.elts) if isinstance(t, ast.Name)]
    return pairs


def _mentions(value: ast.expr, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(value))

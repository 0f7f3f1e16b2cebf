"""The top-level constants of a train.py: `NAME = literal` lines, their values and where they are.

One reader for everyone who looks at the knobs: the sweep agent rewrites them in place, the
journal records what ran and the change summaries name the ones that moved.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")  # ALL_CAPS names are the file's tunables


@dataclass
class Constant:
    name: str
    value: object  # the evaluated literal
    text: str  # its source text
    line: int  # 0-based line index
    start: int  # character span of the value within the line
    end: int


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

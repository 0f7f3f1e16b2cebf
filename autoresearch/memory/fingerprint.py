"""Fingerprints of train.py: one program, one short hash, however it is commented or laid out.

A run costs minutes of accelerator time, so a proposal whose program already ran (the agent
re-worded a comment, re-flowed a line, edited a docstring) must not run again. normalise() keeps
what Python executes: it parses the file, drops the docstrings and prints the tree back, so
comments, blank lines, formatting and docstrings do not count and anything else does. changes()
says in a few words how two versions differ, for the journal and the prompts.

A target with several editable files (target.py) has a program of several files: `Code`, the text
of each by path. Its fingerprint covers them all; its changes and constants are each file's,
named `path:item` (`features.py:DEGREE 2 -> 3`). A program of one file reads exactly as its text.

The normal form is ast.unparse's, which can change between Python versions: compare fingerprints
made by one interpreter (one night's loop), not across upgrades.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from autoresearch.memory.literals import constants_of, qualified
from autoresearch.redact import sanitize

if TYPE_CHECKING:
    from autoresearch.memory.journal import Entry

TRIED_KINDS = ("baseline", "experiment", "fix", "port")  # runs that try a program: not re-runs

FINGERPRINT_CHARS = 12  # hex digits of a sha256: 48 bits, no accidental match in a night of runs
MAX_CHANGES = 8  # items in one summary; beyond that the rest are counted in a last "... N more"
SOURCE_CHARS = 48  # source text quoted in an item (a value, a statement's first line), cut beyond
COMMENTS_ONLY = "comments only"  # the summary when only comments, layout or docstrings differ
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
WITH_DOCSTRING = (ast.Module, *DEFINITIONS)


def normalise(source: str) -> str:
    """The program as Python runs it: no comments, no blank lines, no docstrings, one layout.
    Raises SyntaxError (or ValueError, for null bytes) when the source does not parse."""
    return ast.unparse(_program(source))


Code = str | Mapping[str, str]  # a program: its one file's text, or every editable file's by path


def fingerprint(source: Code) -> str:
    """A short hex hash of the normalised program; of the raw text of a file that does not
    parse. Several files: of each one's path and normal form, so that moving code from one
    file to another is another program."""
    files = _files(source)
    if len(files) == 1:
        text = _normal(next(iter(files.values())))
    else:
        text = "".join(f"{path}\0{_normal(code)}\0" for path, code in files.items())
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:FINGERPRINT_CHARS]


def _normal(source: str) -> str:
    try:
        return normalise(source)
    except (SyntaxError, ValueError):
        return source


def _files(source: Code) -> Mapping[str, str]:
    return {"": source} if isinstance(source, str) else source


def why_known(text: Code, parent_text: Code, tried: list[Entry], queued: list[tuple[int, str]],
              confirming: list[tuple[int, str, str]]) -> str | None:
    """Why the program `text` need not run, or None: it is its parent but for comments or
    formatting, it ran (`tried`: the journal), it is queued (`queued`: (worker, fingerprint)),
    or it is being confirmed (`confirming`: (run number, fingerprint, description))."""
    mark = fingerprint(text)
    if fingerprint(parent_text) == mark:
        return "it changes nothing but comments, blank lines or formatting"
    same = [e for e in tried if e.fingerprint == mark]
    first = next((e for e in same if e.kind in TRIED_KINDS), same[0] if same else None)
    if first is not None:
        delta = f" ({first.delta:+.6f} vs its parent)" if first.delta is not None else ""
        return f"this is #{first.n} again{delta}, {first.status}: {first.description}"
    for worker, queued_mark in queued:
        if queued_mark == mark:
            return f"worker {worker} is about to run this very program"
    for n, confirmed_mark, description in confirming:
        if confirmed_mark == mark:
            return f"this is #{n} again, being confirmed now: {description}"
    return None


def constants(source: Code) -> dict[str, object]:
    """The literal top-level constants (`NAME = literal`, `path:NAME` of several files) and
    their values; none of a file that does not parse."""
    return {name: c.value for name, c in constants_of(_files(source)).items()}


def changes(old: Code, new: Code) -> list[str]:
    """How program `new` differs from `old`, in at most MAX_CHANGES short items, in this order:

        MATRIX_LR 0.04 -> 0.05              a top-level NAME = ... assignment that changed
        DROPOUT = 0.1 (added)               ... or was added, or removed: `DROPOUT (removed)`
        def norm (changed)                  a function or class, changed / added / removed
        if PROFILE == 'consumer': (changed) any other top-level statement, by its first line
        comments only                       the programs are equal, the texts are not (comments,
                                            layout or docstrings)

    Items within a group are in the new file's order, removed ones last; [] for equal texts.
    A version that does not parse gets one item that says so and where. A program of several
    files gets each file's items in turn, named `path:item`.
    """
    before, after = _files(old), _files(new)
    if len(after) == 1 and len(before) == 1:
        return _bounded(_file_changes(next(iter(before.values())), next(iter(after.values()))))
    items = []
    for path in [*after, *(p for p in before if p not in after)]:
        if path not in after or path not in before:
            items.append(f"{path} ({'removed' if path not in after else 'added'})")
        else:
            items += [qualified(path, item) for item in _file_changes(before[path], after[path])]
    return _bounded(items)


def _file_changes(old: str, new: str) -> list[str]:
    """changes() of one file's two versions, unbounded."""
    if old == new:
        return []
    try:
        new_tree = _program(new)
    except (SyntaxError, ValueError) as e:
        return [f"does not parse ({_where(e)})"]
    try:
        old_tree = _program(old)
    except (SyntaxError, ValueError) as e:
        return [f"the old version does not parse ({_where(e)})"]
    if ast.unparse(old_tree) == ast.unparse(new_tree):
        return [COMMENTS_ONLY]
    old_named, old_rest = _split(old_tree)
    new_named, new_rest = _split(new_tree)
    assigned, defined = [], []
    for key in [*new_named, *(k for k in old_named if k not in new_named)]:
        before, after = old_named.get(key), new_named.get(key)
        item = _named_change(key[0], before, after, old, new)
        if item:
            (defined if isinstance(before or after, DEFINITIONS) else assigned).append(item)
    return assigned + defined + _other_changes(old_rest, new_rest)


def _program(source: str) -> ast.Module:
    """The parsed source with every docstring (the leading string of the module, a class or a
    function) removed; a body left empty becomes `pass`."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, WITH_DOCSTRING) and node.body and _is_docstring(node.body[0]):
            node.body = node.body[1:] or [ast.Pass()]
    return tree


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _where(error: Exception) -> str:
    line = getattr(error, "lineno", None)
    return f"line {line}" if line else str(error)


def _split(tree: ast.Module) -> tuple[dict[tuple[str, int], ast.stmt], list[ast.stmt]]:
    """Top-level statements with a name (`NAME = ...` assignments, functions, classes) keyed by
    (label, occurrence), so a second `def _` is told from the first; the rest in order."""
    named: dict[tuple[str, int], ast.stmt] = {}
    rest: list[ast.stmt] = []
    seen: Counter[str] = Counter()
    for stmt in tree.body:
        label = _label(stmt)
        if label is None:
            rest.append(stmt)
        else:
            seen[label] += 1
            named[(label, seen[label])] = stmt
    return named, rest


def _label(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.ClassDef):
        return f"class {stmt.name}"
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return f"def {stmt.name}"
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
            and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    return None


def _named_change(label: str, before: ast.stmt | None, after: ast.stmt | None,
                  old: str, new: str) -> str | None:
    """`def norm (changed)`, `MATRIX_LR 0.04 -> 0.05`, `DROPOUT = 0.1 (added)`; values that span
    several lines are not quoted (`FA4_WARMUP (changed)`)."""
    if before is not None and after is not None and ast.unparse(before) == ast.unparse(after):
        return None
    was = _value(old, before) if isinstance(before, ast.Assign) else None
    now = _value(new, after) if isinstance(after, ast.Assign) else None
    if after is None:
        return f"{label} (removed)"
    if before is None:
        return f"{label} = {now} (added)" if now else f"{label} (added)"
    return f"{label} {was} -> {now}" if was and now else f"{label} (changed)"


def _value(source: str, stmt: ast.Assign) -> str | None:
    """An assignment's value as written, when it is written on one line."""
    text = ast.get_source_segment(source, stmt.value)
    return sanitize(text, SOURCE_CHARS) if text and "\n" not in text else None


def _other_changes(before: list[ast.stmt], after: list[ast.stmt]) -> list[str]:
    """Unnamed top-level statements (imports, if blocks, calls) matched in order; a statement
    replaced by another in the same place counts as changed."""
    old_text, new_text = [ast.unparse(s) for s in before], [ast.unparse(s) for s in after]
    items = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old_text, new_text,
                                                      autojunk=False).get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1)
        items += [f"{_head(t)} (changed)" for t in new_text[j1:j1 + paired]]
        items += [f"{_head(t)} (added)" for t in new_text[j1 + paired:j2]]
        items += [f"{_head(t)} (removed)" for t in old_text[i1 + paired:i2]]
    return items


def _head(statement: str) -> str:
    return sanitize(statement.splitlines()[0], SOURCE_CHARS)


def _bounded(items: list[str]) -> list[str]:
    if len(items) <= MAX_CHANGES:
        return items
    kept = items[: MAX_CHANGES - 1]
    return [*kept, f"... {len(items) - len(kept)} more"]

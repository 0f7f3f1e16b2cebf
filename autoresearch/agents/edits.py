"""SEARCH/REPLACE answers: parse what a model wrote, apply it to train.py (or a target's editable
files) exactly or not at all.

The answer format (defined in prompt.py's system prompt):

    DESCRIPTION: <one line>
    HYPOTHESIS: <one line, optional>
    <<<<<<< SEARCH
    <exact existing lines of train.py>
    =======
    <replacement lines>
    >>>>>>> REPLACE

A target with several editable files has each block name its file on a `FILE: <path>` line
before it (the file holds for the blocks after it, until the next FILE line); with one file the
line may be left out (a FILE line is then ignored). No fuzzy matching: a SEARCH that is not found
exactly once is an error whose message goes back to the model, which is cheaper and safer than
guessing what it meant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Models vary the marker length and add markdown; accept 5-9 marker characters and bold/heading.
SEARCH_RE = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
REPLACE_RE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")


def labelled(label: str) -> re.Pattern:
    """A `LABEL: text` line, forgiving the markdown models wrap around it."""
    return re.compile(rf"^[\s#*_>`-]*{label}[*_]*\s*:[*_]*\s*(.*?)[\s*_`]*$", re.IGNORECASE)


DESCRIPTION_RE = labelled("DESCRIPTION")
HYPOTHESIS_RE = labelled("HYPOTHESIS")
FILE_RE = labelled("FILE")
THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)  # reasoning some local servers inline


class EditError(Exception):
    """Why an answer cannot be used, phrased for the model (it is sent back to it once)."""


@dataclass
class Edit:
    search: str  # whole lines, each ending in "\n"
    replace: str  # "" deletes the searched lines
    file: str = ""  # the file it edits, from the FILE line before it; "" when none named it


@dataclass
class Answer:
    description: str
    edits: list[Edit]
    hypothesis: str = ""


def parse_answer(text: str) -> Answer:
    """Read a DESCRIPTION line and the SEARCH/REPLACE blocks; text outside them is ignored."""
    lines = THINK_RE.sub("", text.replace("\r\n", "\n")).split("\n")
    description = hypothesis = file = ""
    edits: list[Edit] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not SEARCH_RE.match(line):
            match = DESCRIPTION_RE.match(line)
            if match and not description:
                description = match.group(1).strip()
            match = HYPOTHESIS_RE.match(line)
            if match and not hypothesis:
                hypothesis = match.group(1).strip()
            match = FILE_RE.match(line)
            if match:
                file = match.group(1).strip().strip("`'\"")
            continue
        n = len(edits) + 1
        search, i = _take_until(lines, i, DIVIDER_RE, f"block {n}: missing ======= after SEARCH")
        replace, i = _take_until(lines, i, REPLACE_RE, f"block {n}: missing >>>>>>> REPLACE")
        if not "".join(search).strip():
            raise EditError(f"block {n}: SEARCH is empty; copy the lines to replace from train.py")
        edits.append(Edit(_joined(search), _joined(replace), file))
    if not description:
        raise EditError("no 'DESCRIPTION: <one line>' line found")
    if not edits:
        raise EditError("no <<<<<<< SEARCH / ======= / >>>>>>> REPLACE blocks found")
    return Answer(description, edits, hypothesis)


def _joined(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _take_until(lines: list[str], i: int, end: re.Pattern, error: str) -> tuple[list[str], int]:
    taken = []
    while i < len(lines):
        if end.match(lines[i]):
            return taken, i + 1
        if SEARCH_RE.match(lines[i]):  # a new block began before this one ended
            break
        taken.append(lines[i])
        i += 1
    raise EditError(error)


def apply_edits(source: str, edits: list[Edit], name: str = "train.py") -> str:
    """Apply the blocks in order to the file `name`; each SEARCH must match whole lines exactly
    once.

    Pure: returns the new text, or raises EditError and the caller writes nothing (all-or-nothing).
    """
    return apply_to_files({name: source}, edits)[name]


def apply_to_files(files: Mapping[str, str], edits: list[Edit]) -> dict[str, str]:
    """Apply the blocks in order, each to the file it names (the only one when it names none);
    each SEARCH must match whole lines of its file exactly once. Pure: the new texts of every
    file, or EditError and nothing is written (all-or-nothing)."""
    texts = dict(files)
    unterminated = {name for name, text in texts.items() if not text.endswith("\n")}
    for name in unterminated:  # so that the last line matches like any other
        texts[name] += "\n"
    for n, edit in enumerate(edits, start=1):
        name = _file_of(edit, n, list(files))
        source = texts[name]
        starts = _line_matches(source, edit.search)
        if not starts:
            raise EditError(f"block {n}: SEARCH text not found in {name} "
                            "(it must match whole lines exactly, including indentation)")
        if len(starts) > 1:
            raise EditError(f"block {n}: SEARCH text found {len(starts)} times in {name}; "
                            "include more surrounding lines so it matches exactly once")
        start = starts[0]
        texts[name] = source[:start] + edit.replace + source[start + len(edit.search):]
    for name in unterminated:
        if texts[name].endswith("\n"):
            texts[name] = texts[name][:-1]
    return texts


def _file_of(edit: Edit, n: int, names: list[str]) -> str:
    """The file a block edits: the only one there is (whatever a FILE line says), or the one
    its FILE line names."""
    if len(names) == 1:
        return names[0]
    if not edit.file:
        raise EditError(f"block {n}: no FILE line names the file it edits; put a line "
                        f"`FILE: <one of {', '.join(names)}>` before it")
    if edit.file not in names:
        raise EditError(f"block {n}: FILE {edit.file} is not a file you may edit (only "
                        f"{', '.join(names)})")
    return edit.file


def _line_matches(source: str, search: str) -> list[int]:
    """Offsets where `search` (whole lines, newline-terminated) occurs starting at a line start.

    Anchoring on lines keeps `LR = 0.04` from matching inside `MAX_LR = 0.04` or `LR = 0.045`.
    """
    starts = []
    start = source.find(search)
    while start != -1:
        if start == 0 or source[start - 1] == "\n":
            starts.append(start)
        start = source.find(search, start + 1)
    return starts

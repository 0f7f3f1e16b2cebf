"""SEARCH/REPLACE parsing and exact, all-or-nothing application."""

import re
from pathlib import Path

import pytest

from autoresearch.agents.edits import Edit, EditError, apply_edits, apply_to_files, parse_answer

TRAIN_PY = (Path(__file__).parent.parent / "train.py").read_text()  # the real one
LINES = TRAIN_PY.splitlines()


def line(prefix: str) -> str:
    """The one line of train.py that starts with `prefix` (indentation included), as it is."""
    found = [text for text in LINES if text.startswith(prefix)]
    assert len(found) == 1, f"expected one line of train.py starting with {prefix!r}: {found}"
    return found[0]


MATRIX_LR = line("MATRIX_LR = ")  # e.g. "MATRIX_LR = 0.04  # Muon, every matrix ..."
SCALAR_LR = line("SCALAR_LR = ")
DEPTH = line("DEPTH = ")
WINDOW_PATTERN = line("WINDOW_PATTERN = ")
OVERRIDE = line("    DEPTH")  # indented: the cpu profile's override inside `elif PROFILE == ...`


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def changed_lines(old: str, new: str) -> dict[int, str]:
    """Line index -> new text, for edits that keep the line count."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    assert len(old_lines) == len(new_lines)
    return {i: b for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b}


def test_single_block_applies_exactly():
    replacement = "MATRIX_LR = 0.0512  # raised"
    answer = parse_answer("DESCRIPTION: raise matrix LR\n" + block(MATRIX_LR, replacement))
    assert answer.description == "raise matrix LR"
    assert answer.edits == [Edit(MATRIX_LR + "\n", replacement + "\n")]
    new = apply_edits(TRAIN_PY, answer.edits)
    assert changed_lines(TRAIN_PY, new) == {LINES.index(MATRIX_LR): replacement}
    assert new == TRAIN_PY.replace(f"\n{MATRIX_LR}\n", f"\n{replacement}\n")  # neighbours untouched


def test_multiple_blocks_apply_in_order():
    i = LINES.index(MATRIX_LR)
    assert LINES[i + 1] == SCALAR_LR  # two adjacent lines make one block
    answer = parse_answer(
        "Some reasoning first.\nDESCRIPTION: deeper, lower LR\n"
        + block(DEPTH, "DEPTH = 31") + "\nand then\n"
        + block(f"{MATRIX_LR}\n{SCALAR_LR}", "MATRIX_LR = 0.0303\nSCALAR_LR = 0.404")
        + block("MATRIX_LR = 0.0303", "MATRIX_LR = 0.0355"))  # sees the result of block 2
    assert len(answer.edits) == 3
    new = apply_edits(TRAIN_PY, answer.edits)
    assert changed_lines(TRAIN_PY, new) == {LINES.index(DEPTH): "DEPTH = 31",
                                            i: "MATRIX_LR = 0.0355", i + 1: "SCALAR_LR = 0.404"}
    assert f"\n{OVERRIDE}\n" in new  # the indented override mentions DEPTH too: untouched


def test_fenced_answer_is_tolerated():
    text = ("Here is my change.\n\n**DESCRIPTION:** use a full window everywhere\n\n```python\n"
            + block(WINDOW_PATTERN, 'WINDOW_PATTERN = "L"  # all layers full context')
            + "```\n")
    answer = parse_answer(text)
    assert answer.description == "use a full window everywhere"
    new = apply_edits(TRAIN_PY, answer.edits)
    assert changed_lines(TRAIN_PY, new) == {
        LINES.index(WINDOW_PATTERN): 'WINDOW_PATTERN = "L"  # all layers full context'}
    assert "```" not in new


def test_crlf_and_think_blocks():
    text = ("<think>DESCRIPTION: not this one</think>\r\nDESCRIPTION: the real one\r\n"
            + block(DEPTH, "DEPTH = 29").replace("\n", "\r\n"))
    answer = parse_answer(text)
    assert answer.description == "the real one"
    assert answer.edits == [Edit(DEPTH + "\n", "DEPTH = 29\n")]  # no stray \r
    new = apply_edits(TRAIN_PY, answer.edits)
    assert changed_lines(TRAIN_PY, new) == {LINES.index(DEPTH): "DEPTH = 29"}


def test_not_found_names_the_block():
    edits = [Edit(DEPTH + "\n", "DEPTH = 29\n"), Edit("MATRIX_LR = 0.07\n", "MATRIX_LR = 0.05\n")]
    with pytest.raises(EditError, match=r"block 2: SEARCH text not found"):
        apply_edits(TRAIN_PY, edits)


def test_multiple_matches_are_refused():
    # lines that really occur more than once in train.py (super().__init__(), separators, ...)
    repeated = {text: LINES.count(text) for text in LINES if text.strip() and LINES.count(text) > 1}
    assert repeated
    for text, count in repeated.items():
        edits = parse_answer("DESCRIPTION: x\n" + block(text, "# replaced")).edits
        with pytest.raises(EditError, match=rf"block 1: SEARCH text found {count} times"):
            apply_edits(TRAIN_PY, edits)
    # a unique line applies, and becomes ambiguous once a second copy of it is appended
    edits = parse_answer("DESCRIPTION: x\n" + block(MATRIX_LR, "MATRIX_LR = 0.0512")).edits
    assert "MATRIX_LR = 0.0512\n" in apply_edits(TRAIN_PY, edits)
    dup = TRAIN_PY + f"\nif False:\n    pass\n{MATRIX_LR}\n"
    with pytest.raises(EditError, match=r"block 1: SEARCH text found 2 times"):
        apply_edits(dup, edits)


def test_all_or_nothing():
    source = "A = 1\nB = 2\nC = 3\n"
    edits = [Edit("A = 1\n", "A = 10\n"), Edit("Z = 9\n", "Z = 0\n")]
    with pytest.raises(EditError, match="block 2"):
        apply_edits(source, edits)
    assert source == "A = 1\nB = 2\nC = 3\n"  # nothing returned, so nothing to write


def test_whitespace_is_exact():
    # wrong indentation, a trailing space, partial lines: none of them match
    code = MATRIX_LR.partition("#")[0].rstrip()  # "MATRIX_LR = 0.04", without the comment
    wrong = [OVERRIDE.lstrip(), OVERRIDE + " ", " " + OVERRIDE, OVERRIDE[:-1], MATRIX_LR[1:],
             MATRIX_LR + " ", MATRIX_LR.replace("  #", " #", 1), code]
    wrong = [search for search in wrong if search != MATRIX_LR]  # if the line has no comment
    for search in wrong:
        assert search not in LINES, search  # really absent as a whole line
        answer = parse_answer("DESCRIPTION: x\n" + block(search, "X = 1"))
        with pytest.raises(EditError, match="not found"):
            apply_edits(TRAIN_PY, answer.edits)
    # the exact indented line does match
    answer = parse_answer("DESCRIPTION: x\n" + block(OVERRIDE, "    DEPTH = 3"))
    new = apply_edits(TRAIN_PY, answer.edits)
    assert changed_lines(TRAIN_PY, new) == {LINES.index(OVERRIDE): "    DEPTH = 3"}
    compile(new, "train.py", "exec")


def test_empty_replace_deletes_lines_and_unterminated_file():
    answer = parse_answer("DESCRIPTION: drop B\n<<<<<<< SEARCH\nB = 2\n=======\n>>>>>>> REPLACE")
    assert apply_edits("A = 1\nB = 2\nC = 3\n", answer.edits) == "A = 1\nC = 3\n"
    answer = parse_answer("DESCRIPTION: c\n" + block("C = 3", "C = 4"))
    assert apply_edits("A = 1\nC = 3", answer.edits) == "A = 1\nC = 4"


@pytest.mark.parametrize("text, reason", [
    (block("DEPTH = 8", "DEPTH = 9"), "no 'DESCRIPTION"),
    ("DESCRIPTION: nothing to see\nI would change the depth.", "no <<<<<<< SEARCH"),
    ("DESCRIPTION: x\n<<<<<<< SEARCH\nDEPTH = 8\nDEPTH = 9\n", "block 1: missing ======="),
    ("DESCRIPTION: x\n<<<<<<< SEARCH\nDEPTH = 8\n=======\nDEPTH = 9\n", "block 1: missing >>>>>>>"),
    ("DESCRIPTION: x\n<<<<<<< SEARCH\n=======\nDEPTH = 9\n>>>>>>> REPLACE", "SEARCH is empty"),
])
def test_malformed_answers(text, reason):
    with pytest.raises(EditError, match=reason):
        parse_answer(text)


def test_the_hypothesis_line_is_read_when_there_is_one():
    answer = parse_answer("DESCRIPTION: lower the LR\n**HYPOTHESIS:** the loss spikes early\n"
                          "<<<<<<< SEARCH\nA = 1\n=======\nA = 2\n>>>>>>> REPLACE\n")
    assert (answer.description, answer.hypothesis) == ("lower the LR", "the loss spikes early")
    assert parse_answer("DESCRIPTION: x\n<<<<<<< SEARCH\nA = 1\n=======\nA = 2\n"
                        ">>>>>>> REPLACE\n").hypothesis == ""


TWO = {"model.py": "WEIGHT = 0.5\n", "features.py": "SCALE = 1.0\nBIAS = 0.0"}


def block(search: str, replace: str, file: str = "") -> str:
    named = f"FILE: `{file}`\n" if file else ""
    return f"{named}<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_each_block_edits_the_file_its_file_line_names() -> None:
    answer = parse_answer("DESCRIPTION: both\n" + block("WEIGHT = 0.5", "WEIGHT = 0.8", "model.py")
                          + block("BIAS = 0.0", "BIAS = 0.1", "features.py")
                          + block("SCALE = 1.0", "SCALE = 2.0"))  # the file named last holds
    assert [e.file for e in answer.edits] == ["model.py", "features.py", "features.py"]
    assert apply_to_files(TWO, answer.edits) == {"model.py": "WEIGHT = 0.8\n",
                                                 "features.py": "SCALE = 2.0\nBIAS = 0.1"}


@pytest.mark.parametrize("text, says", [
    (block("WEIGHT = 0.5", "WEIGHT = 0.8"), "block 1: no FILE line names the file it edits; "
                                            "put a line `FILE: <one of model.py, features.py>`"),
    (block("X = 1", "X = 2", "evaluate.py"), "block 1: FILE evaluate.py is not a file you may "
                                             "edit (only model.py, features.py)"),
    (block("WEIGHT = 0.5", "WEIGHT = 0.8", "features.py"), "block 1: SEARCH text not found in "
                                                           "features.py"),
])
def test_a_block_of_several_files_must_name_one_of_them(text: str, says: str) -> None:
    with pytest.raises(EditError, match=re.escape(says)):
        apply_to_files(TWO, parse_answer("DESCRIPTION: d\n" + text).edits)


def test_one_editable_file_takes_every_block_whatever_a_file_line_says() -> None:
    edits = parse_answer("DESCRIPTION: d\n" + block("X = 1", "X = 2", "other.py")).edits
    assert apply_edits("X = 1\n", edits) == "X = 2\n"

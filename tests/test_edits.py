"""SEARCH/REPLACE parsing and exact, all-or-nothing application."""

from pathlib import Path

import pytest

from autoresearch.edits import Edit, EditError, apply_edits, parse_answer

TRAIN_PY = (Path(__file__).parent / "fixtures" / "agents_train.py").read_text()


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_single_block_applies_exactly():
    answer = parse_answer("DESCRIPTION: raise matrix LR\n"
                          + block("MATRIX_LR = 0.04", "MATRIX_LR = 0.05"))
    assert answer.description == "raise matrix LR"
    new = apply_edits(TRAIN_PY, answer.edits)
    assert new == TRAIN_PY.replace("\nMATRIX_LR = 0.04\n", "\nMATRIX_LR = 0.05\n")
    assert "UNEMBEDDING_LR = 0.004" in new  # neighbours untouched


def test_multiple_blocks_apply_in_order():
    answer = parse_answer(
        "Some reasoning first.\nDESCRIPTION: deeper, lower LR\n"
        + block("DEPTH = 8", "DEPTH = 10") + "\nand then\n"
        + block("MATRIX_LR = 0.04\nSCALAR_LR = 0.5", "MATRIX_LR = 0.03\nSCALAR_LR = 0.4")
        + block("MATRIX_LR = 0.03", "MATRIX_LR = 0.035"))  # sees the result of block 2
    new = apply_edits(TRAIN_PY, answer.edits)
    assert "\nDEPTH = 10\n" in new
    assert "\nMATRIX_LR = 0.035\nSCALAR_LR = 0.4\n" in new
    assert "    DEPTH = 4\n" in new  # the indented override is a different line


def test_fenced_answer_is_tolerated():
    text = ("Here is my change.\n\n**DESCRIPTION:** use a full window everywhere\n\n```python\n"
            + block('WINDOW_PATTERN = "SSSL"  # S = short (half context) window, L = full; '
                    "last layer always L",
                    'WINDOW_PATTERN = "L"  # all layers full context')
            + "```\n")
    answer = parse_answer(text)
    assert answer.description == "use a full window everywhere"
    new = apply_edits(TRAIN_PY, answer.edits)
    assert 'WINDOW_PATTERN = "L"  # all layers full context\n' in new
    assert "```" not in new


def test_crlf_and_think_blocks():
    text = ("<think>DESCRIPTION: not this one</think>\r\nDESCRIPTION: the real one\r\n"
            + block("DEPTH = 8", "DEPTH = 9").replace("\n", "\r\n"))
    answer = parse_answer(text)
    assert answer.description == "the real one"
    assert "\nDEPTH = 9\n" in apply_edits(TRAIN_PY, answer.edits)


def test_not_found_names_the_block():
    edits = [Edit("DEPTH = 8\n", "DEPTH = 9\n"), Edit("MATRIX_LR = 0.07\n", "MATRIX_LR = 0.05\n")]
    with pytest.raises(EditError, match=r"block 2: SEARCH text not found"):
        apply_edits(TRAIN_PY, edits)


def test_multiple_matches_are_refused():
    # unique in train.py, ambiguous once a second function ends the same way
    edits = parse_answer("DESCRIPTION: x\n" + block("        return x", "        return 2 * x"))
    assert TRAIN_PY.count("        return x\n") == 1
    dup = TRAIN_PY + "\ndef extra(x):\n        return x\n"
    with pytest.raises(EditError, match=r"block 1: SEARCH text found 2 times"):
        apply_edits(dup, edits.edits)


def test_all_or_nothing():
    source = "A = 1\nB = 2\nC = 3\n"
    edits = [Edit("A = 1\n", "A = 10\n"), Edit("Z = 9\n", "Z = 0\n")]
    with pytest.raises(EditError, match="block 2"):
        apply_edits(source, edits)
    assert source == "A = 1\nB = 2\nC = 3\n"  # nothing returned, so nothing to write


def test_whitespace_is_exact():
    # wrong indentation, a trailing space, a partial line: none of them match
    for search in ("DEPTH = 4", "    DEPTH = 4 ", "MATRIX_LR = 0.0", "ATRIX_LR = 0.04"):
        answer = parse_answer("DESCRIPTION: x\n" + block(search, "X = 1"))
        with pytest.raises(EditError, match="not found"):
            apply_edits(TRAIN_PY, answer.edits)
    answer = parse_answer("DESCRIPTION: x\n" + block("    DEPTH = 4", "    DEPTH = 3"))
    assert "    DEPTH = 3\n" in apply_edits(TRAIN_PY, answer.edits)


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

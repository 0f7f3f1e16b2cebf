"""Fingerprints of train.py: comments, layout and docstrings do not count, anything else does."""

from pathlib import Path

import pytest

from autoresearch.memory.fingerprint import (
    COMMENTS_ONLY,
    MAX_CHANGES,
    changes,
    constants,
    fingerprint,
    normalise,
)
from autoresearch.memory.literals import find_constants

TRAIN_PY = (Path(__file__).parent.parent / "train.py").read_text()  # the real one


def edit(old: str, new: str, text: str = TRAIN_PY) -> str:
    """The real train.py with one exact passage replaced (the passage must be there once)."""
    assert text.count(old) == 1, f"train.py no longer has exactly one {old!r}"
    return text.replace(old, new)


NORM = "def norm(x):\n    return F.rms_norm(x, (x.size(-1),))\n"
SAME_PROGRAM = {
    "comment reworded": edit("MATRIX_LR = 0.04  # Muon, every matrix inside the transformer blocks",
                             "MATRIX_LR = 0.04  # Muon: all block matrices"),
    "comment and blank lines added": edit(NORM, "# the one norm\n\n\n" + NORM + "\n# end\n"),
    "block reformatted": edit(NORM, "def norm( x ):\n    return F.rms_norm(\n        x,\n"
                                    "        (x.size(-1), ),\n    )\n",
                              edit("TOTAL_BATCH_SIZE = 2**19", "TOTAL_BATCH_SIZE = 2 ** 19")),
    "imports on one line": edit("from prepare import (\n    MAX_SEQ_LEN,\n    PROFILE,\n",
                                "from prepare import (MAX_SEQ_LEN, PROFILE,\n"),
    "function docstring edited": edit(
        '"""Learning-rate schedule over the fraction of the time budget used: warm up, hold, '
        'decay."""', '"""The LR multiplier: warm up, hold, decay."""'),
    "module docstring removed": TRAIN_PY[TRAIN_PY.index('"""', 3) + 3:],
    "docstring added": edit(NORM, 'def norm(x):\n    """RMSNorm without weights."""\n'
                                  '    return F.rms_norm(x, (x.size(-1),))\n'),
}
DIFFERENT_PROGRAM = {
    "one constant": (edit("MATRIX_LR = 0.04", "MATRIX_LR = 0.05"), ["MATRIX_LR 0.04 -> 0.05"]),
    "one operator in a function": (edit("if progress < WARMUP_RATIO:",
                                        "if progress <= WARMUP_RATIO:"),
                                   ["def lr_multiplier (changed)"]),
    "a method of a class": (edit("F.relu(self.c_fc(x)).square()", "F.gelu(self.c_fc(x))"),
                            ["class MLP (changed)"]),
    "a string that is not a docstring": (edit('fail(f"val_bpb is not finite ({val_bpb})")',
                                              'fail(f"val_bpb is NaN ({val_bpb})")'),
                                         ["def main (changed)"]),
    "a profile override": (edit('if PROFILE == "consumer":', 'if PROFILE == "laptop":'),
                           ["if PROFILE == 'laptop': (changed)"]),
}


@pytest.mark.parametrize("name", SAME_PROGRAM)
def test_comments_layout_and_docstrings_do_not_count(name):
    new = SAME_PROGRAM[name]
    assert new != TRAIN_PY
    assert normalise(new) == normalise(TRAIN_PY)
    assert fingerprint(new) == fingerprint(TRAIN_PY)
    assert changes(TRAIN_PY, new) == [COMMENTS_ONLY]


@pytest.mark.parametrize("name", DIFFERENT_PROGRAM)
def test_a_real_change_gets_another_fingerprint_and_says_what(name):
    new, summary = DIFFERENT_PROGRAM[name]
    assert fingerprint(new) != fingerprint(TRAIN_PY)
    assert changes(TRAIN_PY, new) == summary


def test_the_second_of_two_same_named_functions_is_the_one_changed():
    twice = TRAIN_PY + "\n\ndef _(x):\n    return x\n\n\ndef _(x):\n    return 2 * x\n"
    new = edit("return 2 * x", "return 3 * x", twice)
    assert fingerprint(new) != fingerprint(twice)
    assert changes(twice, new) == ["def _ (changed)"]


def test_a_fingerprint_is_short_hex_and_stable():
    print_ = fingerprint(TRAIN_PY)
    assert len(print_) == 12 and int(print_, 16) >= 0
    assert fingerprint(TRAIN_PY) == print_
    assert changes(TRAIN_PY, TRAIN_PY) == []


def test_several_changes_constants_first_then_definitions_then_the_rest():
    new = edit("MATRIX_LR = 0.04", "MATRIX_LR = 0.03")
    new = edit("SEED = 42\n", "SEED = 42\nDROPOUT = 0.1  # new\n", new)
    new = edit("EXCLUDED_STEPS = 1\n", "", new)
    new = edit("import gc\n", "", new)
    new = edit(NORM, NORM.replace("(x.size(-1),))", "(x.size(-1),), eps=1e-6)")
               + "\n\ndef swish(x):\n    return x * torch.sigmoid(x)\n", new)
    assert changes(TRAIN_PY, new) == [
        "MATRIX_LR 0.04 -> 0.03", "DROPOUT = 0.1 (added)", "EXCLUDED_STEPS (removed)",
        "def norm (changed)", "def swish (added)", "import gc (removed)"]
    assert changes(new, TRAIN_PY) == [
        "MATRIX_LR 0.03 -> 0.04", "EXCLUDED_STEPS = 1 (added)", "DROPOUT (removed)",
        "def norm (changed)", "def swish (removed)", "import gc (added)"]


def test_a_long_summary_is_cut_and_counted():
    names = ["EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR", "SCALAR_LR", "WEIGHT_DECAY",
             "WARMUP_RATIO", "WARMDOWN_RATIO", "FINAL_LR_FRAC", "DEPTH", "SEED"]
    new = TRAIN_PY
    for name in names:
        new = edit(f"\n{name} = ", f"\n{name} = 1 + ", new)
    summary = changes(TRAIN_PY, new)
    assert len(summary) == MAX_CHANGES
    assert summary[0] == "EMBEDDING_LR 0.6 -> 1 + 0.6"
    assert summary[-1] == f"... {len(names) - (MAX_CHANGES - 1)} more"


def test_a_program_that_does_not_parse():
    broken = edit("def norm(x):", "def norm(x:")
    line = TRAIN_PY[:TRAIN_PY.index(NORM)].count("\n") + 1
    assert changes(TRAIN_PY, broken) == [f"does not parse (line {line})"]
    assert changes(broken, TRAIN_PY) and changes(broken, TRAIN_PY)[0].startswith(
        "the old version does not parse")
    with pytest.raises(SyntaxError):
        normalise(broken)
    # the raw text is hashed: any edit of a broken file is another fingerprint
    assert fingerprint(broken) != fingerprint(broken + "# x\n") != fingerprint(TRAIN_PY)
    assert constants(broken) == {}


def test_constants_are_the_literal_knobs_and_their_values():
    values = constants(TRAIN_PY)
    assert values == {name: c.value for name, c in find_constants(TRAIN_PY).items()}
    assert values["MATRIX_LR"] == 0.04 and values["TOTAL_BATCH_SIZE"] == 2**19
    assert values["ADAM_BETAS"] == (0.8, 0.95) and values["WINDOW_PATTERN"] == "SSSL"
    banner = 'BANNER = """\nfixed\n"""\n'
    assert "BANNER" not in constants(TRAIN_PY + banner)  # a multi-line string is code, not a knob


def test_a_program_of_several_files_is_all_of_them() -> None:
    one = {"model.py": "WEIGHT = 0.5\n", "features.py": "SCALE = 1.0\n"}
    assert fingerprint({"train.py": "X = 1\n"}) == fingerprint("X = 1\n")  # one file: its text
    assert fingerprint({**one, "model.py": "WEIGHT = 0.5  # a comment\n"}) == fingerprint(one)
    assert fingerprint({**one, "features.py": "SCALE = 2.0\n"}) != fingerprint(one)
    moved = {"model.py": "WEIGHT = 0.5\nSCALE = 1.0\n", "features.py": ""}
    assert fingerprint(moved) != fingerprint(one)  # code moved to another file: another program
    assert constants(one) == {"model.py:WEIGHT": 0.5, "features.py:SCALE": 1.0}
    new = {"model.py": "WEIGHT = 0.8\ndef f():\n    pass\n", "features.py": "SCALE = 1.0\n"}
    assert changes(one, new) == ["model.py:WEIGHT 0.5 -> 0.8", "model.py:def f (added)"]
    assert changes(one, {"model.py": "WEIGHT = 0.5\n"}) == ["features.py (removed)"]

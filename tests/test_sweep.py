"""The sweep agent: deterministic, minimal, valid, never repeating itself."""

from pathlib import Path

import pytest

from autoresearch.agents import AgentRefused, AgentRequest, make_agent
from autoresearch.errors import UserError
from autoresearch.ledger.results import Row
from autoresearch.memory.literals import find_constants
from constants import PROFILES

TRAIN_PY = (Path(__file__).parent.parent / "train.py").read_text()  # the real one
CONSTANTS = find_constants(TRAIN_PY)
SEQ_LEN = PROFILES["h100"].max_seq_len  # the top-level constants are the h100 profile's
KNOBS = {"ASPECT_RATIO", "WINDOW_PATTERN", "TOTAL_BATCH_SIZE", "EMBEDDING_LR", "UNEMBEDDING_LR",
         "MATRIX_LR", "SCALAR_LR", "WEIGHT_DECAY", "ADAM_BETAS", "WARMUP_RATIO", "WARMDOWN_RATIO",
         "FINAL_LR_FRAC", "DEPTH", "DEVICE_BATCH_SIZE", "SOFTCAP"}


def request(repo: Path, experiment: int, history=(), train_py: str = TRAIN_PY) -> AgentRequest:
    (repo / "train.py").write_text(train_py)
    return AgentRequest(repo=repo, program="", train_py=train_py, history=list(history),
                        experiment=experiment)


def top_level_values(text: str) -> dict:
    return {name: c.value for name, c in find_constants(text).items()}


def propose(repo: Path, experiment: int, seed: int = 0, history=()) -> tuple[str, str]:
    proposal = make_agent("sweep", seed=seed).propose(request(repo, experiment, history))
    return proposal.description, (repo / "train.py").read_text()


def test_finds_the_hyperparameters_of_train_py():
    lines = TRAIN_PY.splitlines()
    assert set(CONSTANTS) >= KNOBS
    for name, c in CONSTANTS.items():
        line = lines[c.line]
        assert line.startswith(f"{name} = ")  # top level, never the indented profile override
        assert line[c.start:c.end] == c.text
        assert eval(c.text, {"__builtins__": {}}) == c.value  # the literal, e.g. 0.04 or 2**19
    values = top_level_values(TRAIN_PY)
    assert values["TOTAL_BATCH_SIZE"] % (values["DEVICE_BATCH_SIZE"] * SEQ_LEN) == 0


def test_nested_overrides_are_left_alone(tmp_path):
    # train.py's own overrides are tuple assignments; a plain one nested in an `if` is skipped too
    override = '\nif PROFILE == "tiny":\n    DEPTH = 2\n    MATRIX_LR = 0.01\n'
    text = TRAIN_PY + override
    lines = {name: c.line for name, c in find_constants(text).items()}
    assert lines == {name: c.line for name, c in CONSTANTS.items()}
    for n in range(1, 40):
        make_agent("sweep").propose(request(tmp_path, n, train_py=text))
        new = (tmp_path / "train.py").read_text()
        assert new != text and new.endswith(override)


def test_deterministic_for_a_seed(tmp_path):
    first = [propose(tmp_path, n) for n in range(1, 6)]
    again = [propose(tmp_path, n) for n in range(1, 6)]
    assert first == again
    assert len({description for description, _ in first}) > 1  # experiments differ
    other_seed = [propose(tmp_path, n, seed=7)[0] for n in range(1, 6)]
    assert other_seed != [description for description, _ in first]


def test_changes_one_or_two_literals_and_keeps_the_rest(tmp_path):
    sizes, names = set(), set()
    old_lines = TRAIN_PY.splitlines()
    for n in range(1, 80):
        description, new = propose(tmp_path, n)
        compile(new, "train.py", "exec")
        new_lines = new.splitlines()
        assert len(old_lines) == len(new_lines)
        changed = [(i, b) for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True))
                   if a != b]
        # a pair of knobs, or the batch halving (TOTAL and DEVICE together): at most 2+2 lines
        assert 1 <= len(changed) <= 4, description
        sizes.add(len(changed))
        for i, line in changed:
            [c] = [c for c in CONSTANTS.values() if c.line == i]  # a real constant's line
            names.add(c.name)
            assert f"{c.name} {c.text} -> " in description
            assert line[:c.start] == old_lines[i][:c.start]  # `NAME = ` kept
            assert line.endswith(old_lines[i][c.end:])  # comment and layout kept
            new_text = line[c.start:len(line) - len(old_lines[i]) + c.end]
            assert f"{c.name} {c.text} -> {new_text}" in description
            assert new_text != c.text
    assert sizes >= {1, 2}  # single changes and, sometimes, two
    assert len(names) >= 5  # and many different knobs


def test_mutations_keep_values_valid(tmp_path):
    original = top_level_values(TRAIN_PY)
    halvings = 0
    for n in range(1, 150):
        _, new = propose(tmp_path, n)
        compile(new, "train.py", "exec")
        values = top_level_values(new)
        assert values.keys() == original.keys()
        assert values["TOTAL_BATCH_SIZE"] % (values["DEVICE_BATCH_SIZE"] * SEQ_LEN) == 0
        assert all(0 < beta < 1 for beta in values["ADAM_BETAS"])
        for name in ("WARMUP_RATIO", "WARMDOWN_RATIO", "FINAL_LR_FRAC"):
            assert 0 <= values[name] <= 1
        for name in ("EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR", "SCALAR_LR", "WEIGHT_DECAY",
                     "SOFTCAP"):
            assert values[name] > 0
        assert values["DEPTH"] >= 1 and values["ASPECT_RATIO"] >= 1
        assert set(values["WINDOW_PATTERN"]) <= {"S", "L"} and values["WINDOW_PATTERN"]
        for name in ("HEAD_DIM", "SEED", "FINAL_EVAL_BATCH_SIZE"):  # structural: never touched
            if name in original:
                assert values[name] == original[name], name
        changed = {name for name in values if values[name] != original[name]}
        assert changed and changed <= KNOBS, changed
        # the device batch is only ever halved, and always together with the total
        halved = values["TOTAL_BATCH_SIZE"] < original["TOTAL_BATCH_SIZE"]
        assert ("DEVICE_BATCH_SIZE" in changed) == halved
        if halved:
            assert values["DEVICE_BATCH_SIZE"] * 2 == original["DEVICE_BATCH_SIZE"]
            assert values["TOTAL_BATCH_SIZE"] * 2 == original["TOTAL_BATCH_SIZE"]
            halvings += 1
    assert halvings  # the paired change does come up


def test_avoids_a_mutation_already_in_history(tmp_path):
    description, _ = propose(tmp_path, 3)
    tried = Row(commit="abc1234", val_bpb=0.99, memory_gb=40.0, status="discard",
                description=description)
    again, new = propose(tmp_path, 3, history=[tried])
    assert again != description
    compile(new, "train.py", "exec")


def test_refuses_when_every_neighbour_was_tried(tmp_path):
    train_py = "DEPTH = 1\n\nprint(DEPTH)\n"
    history = [Row(commit="a", val_bpb=1.0, memory_gb=1.0, status="discard",
                   description="DEPTH 1 -> 2")]
    agent = make_agent("sweep")
    with pytest.raises(AgentRefused, match="tried every neighbour"):
        agent.propose(request(tmp_path, 1, history, train_py=train_py))
    assert (tmp_path / "train.py").read_text() == train_py


def test_keeps_power_of_two_spelling_and_skips_ambiguous_names(tmp_path):
    train_py = "TOTAL_BATCH_SIZE = 2**19  # tokens\nDEPTH = 8\nDEPTH = 6\n"
    seen = {make_agent("sweep").propose(request(tmp_path, n, train_py=train_py)).description
            for n in range(1, 30)}
    assert seen == {"TOTAL_BATCH_SIZE 2**19 -> 2**20"}  # DEPTH is assigned twice: left alone
    assert (tmp_path / "train.py").read_text() == "TOTAL_BATCH_SIZE = 2**20  # tokens\n" \
        "DEPTH = 8\nDEPTH = 6\n"


def test_refuses_crash_fixes_and_llm_options(tmp_path):
    crashed = request(tmp_path, 2)
    crashed.crash_log = "Traceback ...\nSyntaxError: invalid syntax"
    with pytest.raises(AgentRefused, match="cannot fix"):
        make_agent("sweep").propose(crashed)
    with pytest.raises(UserError, match="--model does not apply"):
        make_agent("sweep", model="gpt-5")
    proposal = make_agent("sweep").propose(request(tmp_path, 1))
    assert proposal.usage.cost_usd == 0.0

"""The sweep agent: deterministic, minimal, valid, never repeating itself."""

import ast
from pathlib import Path

import pytest

from autoresearch.agents import AgentRefused, AgentRequest, make_agent
from autoresearch.agents.sweep import find_constants
from autoresearch.errors import UserError
from autoresearch.results import Row

TRAIN_PY = (Path(__file__).parent / "fixtures" / "agents_train.py").read_text()
SEQ_LEN = 2048  # any power of two up to the batch works for the divisibility check


def request(repo: Path, experiment: int, history=(), train_py: str = TRAIN_PY) -> AgentRequest:
    (repo / "train.py").write_text(train_py)
    return AgentRequest(repo=repo, program="", train_py=train_py, history=list(history),
                        experiment=experiment)


def top_level_values(text: str) -> dict:
    return {name: c.value for name, c in find_constants(text).items()}


def propose(repo: Path, experiment: int, seed: int = 0, history=()) -> tuple[str, str]:
    proposal = make_agent("sweep", seed=seed).propose(request(repo, experiment, history))
    return proposal.description, (repo / "train.py").read_text()


def test_deterministic_for_a_seed(tmp_path):
    first = [propose(tmp_path, n) for n in range(1, 6)]
    again = [propose(tmp_path, n) for n in range(1, 6)]
    assert first == again
    assert len({description for description, _ in first}) > 1  # experiments differ
    other_seed = [propose(tmp_path, n, seed=7)[0] for n in range(1, 6)]
    assert other_seed != [description for description, _ in first]


def test_changes_one_or_two_literals_and_keeps_the_rest(tmp_path):
    sizes = set()
    for n in range(1, 80):
        description, new = propose(tmp_path, n)
        compile(new, "train.py", "exec")
        old_lines, new_lines = TRAIN_PY.splitlines(), new.splitlines()
        assert len(old_lines) == len(new_lines)
        changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
        # a pair of knobs, or the batch halving (TOTAL and DEVICE together): at most 2+2 lines
        assert 1 <= len(changed) <= 4, description
        sizes.add(len(changed))
        for old, line in changed:
            name = old.split("=")[0].strip()
            assert name in description
            assert old.partition("#")[2] == line.partition("#")[2]  # comment kept
            assert not line.startswith(" ")  # the nested profile override is never touched
    assert sizes >= {1, 2}  # single changes and, sometimes, two


def test_mutations_keep_values_valid(tmp_path):
    for n in range(1, 150):
        _, new = propose(tmp_path, n)
        values = top_level_values(new)
        assert values["TOTAL_BATCH_SIZE"] % (values["DEVICE_BATCH_SIZE"] * SEQ_LEN) == 0
        assert all(0 < beta < 1 for beta in values["ADAM_BETAS"])
        for name in ("WARMUP_RATIO", "WARMDOWN_RATIO", "FINAL_LR_FRAC"):
            assert 0 <= values[name] <= 1
        for name in ("EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR", "SCALAR_LR", "WEIGHT_DECAY"):
            assert values[name] > 0
        assert values["DEPTH"] >= 1 and values["HEAD_DIM"] == 128
        assert set(values["WINDOW_PATTERN"]) <= {"S", "L"}
        ast.parse(new)


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

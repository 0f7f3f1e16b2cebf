"""The sweep agent: a local search with a memory; deterministic, minimal, valid, and it never
proposes a point it has measured.

The search tests drive it like the loop does, without a GPU: the train.py is the synthetic
landscape (tests/landscape_train.py), a run's val_bpb is the landscape's value plus seeded noise,
and a run is kept when it beats the best by more than the threshold.
"""

import functools
import json
import math
from pathlib import Path

import landscape_train as landscape
import pytest
from loop_helpers import FAKE_TRAIN, edit, git, make_repo, run_loop, tag_rows

from autoresearch.agents import AgentRefused, AgentRequest, make_agent
from autoresearch.agents.base import InFlight
from autoresearch.agents.prompt import cli_prompt
from autoresearch.config import PLATEAU_AFTER
from autoresearch.errors import UserError
from autoresearch.memory.fingerprint import changes
from autoresearch.memory.journal import Entry
from autoresearch.memory.literals import find_constants, profile_overrides
from constants import PROFILES

TRAIN_PY = (Path(__file__).parent.parent / "train.py").read_text()  # the real one
CONSTANTS = find_constants(TRAIN_PY)
SEQ_LEN = PROFILES["h100"].max_seq_len  # the top-level constants are the h100 profile's
KNOBS = {"ASPECT_RATIO", "WINDOW_PATTERN", "TOTAL_BATCH_SIZE", "EMBEDDING_LR", "UNEMBEDDING_LR",
         "MATRIX_LR", "SCALAR_LR", "WEIGHT_DECAY", "ADAM_BETAS", "WARMUP_RATIO", "WARMDOWN_RATIO",
         "FINAL_LR_FRAC", "DEPTH", "DEVICE_BATCH_SIZE", "SOFTCAP"}


LANDSCAPE_PY = Path(landscape.__file__).read_text()
NOISE = 0.0005  # sd of a run's val_bpb in the search tests...
THRESHOLD = 0.001  # ...and the keep threshold: 2 sd, as policy.py sets it (and its floor)


def request(repo: Path, experiment: int, journal=(), train_py: str = TRAIN_PY, **fields
            ) -> AgentRequest:
    (repo / "train.py").write_text(train_py)
    return AgentRequest(repo=repo, program="", train_py=train_py, history=[],
                        experiment=experiment, journal=list(journal), **fields)


def top_level_values(text: str) -> dict:
    return dict(_constant_values(text))


@functools.cache
def _constant_values(text: str) -> tuple:
    """find_constants parses the file: the searches ask again and again about the same texts."""
    return tuple((name, c.value) for name, c in find_constants(text).items())


def propose(repo: Path, experiment: int, seed: int = 0, journal=(), train_py: str = TRAIN_PY,
            **fields) -> tuple[str, str]:
    proposal = make_agent("sweep", seed=seed).propose(
        request(repo, experiment, journal, train_py, **fields))
    return proposal.description, (repo / "train.py").read_text()


def entry(n: int, text: str, parent: str, status: str = "discard", delta: float | None = 0.01,
          kind: str = "experiment") -> Entry:
    """A journal entry for a run of `text`, its constants as the journal file holds them."""
    values = json.loads(json.dumps(top_level_values(text)))  # tuples come back as lists
    return Entry(n=n, kind=kind, commit=f"{n:07x}", parent=parent, worker=0, description="",
                 constants=values, status=status, val_bpb=1.0, delta=delta)


def set_values(text: str, **values) -> str:
    """The text with some constants' literals replaced (the sweep's own rewriting)."""
    for name, value in values.items():
        c = find_constants(text)[name]
        lines = text.splitlines(keepends=True)
        lines[c.line] = lines[c.line][:c.start] + value + lines[c.line][c.end:]
        text = "".join(lines)
    return text


def point(text: str) -> tuple:
    return tuple(sorted(top_level_values(text).items()))


def search(repo: Path, steps: int, seed: int, noise: float = NOISE, journal_hook=None):
    """The loop in miniature on the landscape: every step the sweep proposes on the best, the
    run is measured (the landscape's value plus seeded noise) and journaled, kept when it beats
    the best by more than THRESHOLD. Yields (step, proposed text, the journal before it, the
    best's gap to the optimum after it)."""
    agent = make_agent("sweep", seed=seed)
    best_text, best_commit = LANDSCAPE_PY, f"{0:07x}"
    best_value = landscape.observed(top_level_values(LANDSCAPE_PY), 0, noise, seed)
    journal = [entry(0, LANDSCAPE_PY, best_commit, "keep", None, kind="baseline")]
    since_keep = 0
    for n in range(1, steps + 1):
        plateau = since_keep if since_keep >= PLATEAU_AFTER else 0
        agent.propose(request(repo, n, journal, best_text, plateau=plateau))
        text = (repo / "train.py").read_text()
        value = landscape.observed(top_level_values(text), n, noise, seed)
        kept = best_value - value > THRESHOLD
        before = list(journal)
        journal.append(entry(n, text, best_commit, "keep" if kept else "discard",
                             value - best_value))
        if kept:
            best_text, best_commit, best_value, since_keep = text, f"{n:07x}", value, 0
        else:
            since_keep += 1
        yield n, text, before, landscape.gap(top_level_values(best_text))


def steps_to(repo: Path, gap: float, seed: int, limit: int) -> int | None:
    """The step after which the best is within `gap` of the optimum, None if not by `limit`."""
    repo.mkdir()
    return next((n for n, _, _, best_gap in search(repo, limit, seed) if best_gap <= gap), None)


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


def test_deterministic_for_a_seed_an_experiment_and_a_worker(tmp_path):
    first = [propose(tmp_path, n) for n in range(1, 6)]
    again = [propose(tmp_path, n) for n in range(1, 6)]
    assert first == again
    assert len({description for description, _ in first}) > 1  # experiments differ
    other_seed = [propose(tmp_path, n, seed=7)[0] for n in range(1, 6)]
    assert other_seed != [description for description, _ in first]
    other_worker = [propose(tmp_path, n, worker=1)[0] for n in range(1, 6)]
    assert other_worker != [description for description, _ in first]
    # and with a journal: the same night read twice gives the same proposals
    runs = [text for _, text, _, _ in search(tmp_path, 30, seed=3)]
    assert runs == [text for _, text, _, _ in search(tmp_path, 30, seed=3)]


def test_changes_one_or_two_literals_and_keeps_the_rest(tmp_path):
    sizes, names = set(), set()
    old_lines = TRAIN_PY.splitlines()
    for n in range(1, 30):
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


@pytest.mark.slow
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


def test_never_proposes_a_measured_point(tmp_path):
    measured = 0
    for n, text, journal, _ in search(tmp_path, 150, seed=0):
        points = {tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                               for k, v in e.constants.items())) for e in journal}
        assert point(text) not in points, f"step {n} proposed a measured point"
        measured += 1
    assert measured == 150


def test_does_not_undo_a_kept_change(tmp_path):
    """The H200 night: WEIGHT_DECAY 0.2 -> 0.4 was kept, then 0.4 -> 0.2 was proposed: the
    baseline's point again."""
    kept = set_values(LANDSCAPE_PY, WEIGHT_DECAY="0.4")
    journal = [entry(0, LANDSCAPE_PY, "0000000", "keep", None, kind="baseline"),
               entry(1, kept, "0000000", "keep", -0.002)]
    for worker in (0, 1):
        for n in range(2, 52):
            description, new = propose(tmp_path, n, journal=journal, train_py=kept,
                                       worker=worker)
            assert point(new) != point(LANDSCAPE_PY), description


def test_avoids_what_another_worker_runs_now(tmp_path):
    description, theirs = propose(tmp_path, 3)
    running = InFlight(worker=1, description=description, changes=changes(TRAIN_PY, theirs))
    again, mine = propose(tmp_path, 3, inflight=[running])
    assert point(mine) != point(theirs), again
    # work that changes code, not only constants, is not a point of the search: no effect
    code = InFlight(worker=1, description="gelu", changes=["def norm (changed)"])
    assert propose(tmp_path, 3, inflight=[code])[0] == description


def test_refuses_when_every_neighbour_was_measured(tmp_path):
    train_py = 'WINDOW_PATTERN = "SSSL"\n\nprint(WINDOW_PATTERN)\n'
    others = [set_values(train_py, WINDOW_PATTERN=f'"{p}"') for p in ("L", "SL", "SSL")]
    journal = [entry(0, train_py, "0000000", "keep", None, kind="baseline")]
    journal += [entry(n, text, "0000000") for n, text in enumerate(others, 1)]
    description, _ = propose(tmp_path, 4, journal=journal, train_py=train_py)
    assert description == 'WINDOW_PATTERN "SSSL" -> "SSSSSSSL"'  # the one left
    journal.append(entry(4, set_values(train_py, WINDOW_PATTERN='"SSSSSSSL"'), "0000000"))
    with pytest.raises(AgentRefused, match="measured every neighbour"):
        propose(tmp_path, 5, journal=journal, train_py=train_py)
    assert (tmp_path / "train.py").read_text() == train_py


def lr_steps(text: str, new: str, names=("MATRIX_LR",)) -> set[int]:
    """How far each of these learning rates moved, in quarter octaves: 2 for x1.41, -3 for
    / 2**(3/4) (the sweep's levels)."""
    old, now = top_level_values(text), top_level_values(new)
    return {round(4 * math.log2(now[n] / old[n])) for n in names if now[n] != old[n]}


def test_steps_grow_after_a_keep_and_shrink_after_failures(tmp_path):
    base = [entry(0, LANDSCAPE_PY, "0000000", "keep", None, kind="baseline")]
    # MATRIX_LR x1.41 was kept: its next steps are x or / 2**(3/4), the others' still 2**(1/2)
    kept = set_values(LANDSCAPE_PY, MATRIX_LR="0.0566")
    journal = base + [entry(1, kept, "0000000", "keep", -0.002)]
    grown, others = set(), set()
    for n in range(2, 60):
        _, new = propose(tmp_path, n, journal=journal, train_py=kept)
        grown |= lr_steps(kept, new)
        others |= lr_steps(kept, new, ("EMBEDDING_LR", "UNEMBEDDING_LR", "SCALAR_LR"))
    assert grown == {3, -3}
    assert others == {2, -2}
    # ten runs that moved MATRIX_LR and came out worse take a level off: x or / 2**(1/4)
    worse = [entry(n, set_values(LANDSCAPE_PY, MATRIX_LR=lr), "0000000")
             for n, lr in enumerate(("0.02", "0.08", "0.03", "0.06", "0.025", "0.07", "0.035",
                                     "0.05", "0.045", "0.028"), 1)]
    elsewhere = set_values(LANDSCAPE_PY, WARMDOWN_RATIO="0.6")  # then a keep moved the best
    journal = base + worse + [entry(11, elsewhere, "0000000", "keep", -0.002)]
    shrunk = set()
    for n in range(12, 70):
        _, new = propose(tmp_path, n, journal=journal, train_py=elsewhere)
        shrunk |= lr_steps(elsewhere, new)
    assert shrunk == {1, -1}


def test_follows_a_kept_direction_once(tmp_path):
    kept = set_values(LANDSCAPE_PY, MATRIX_LR="0.0566")
    journal = [entry(0, LANDSCAPE_PY, "0000000", "keep", None, kind="baseline"),
               entry(1, kept, "0000000", "keep", -0.002)]
    follows = {propose(tmp_path, n, journal=journal, train_py=kept)[0] for n in range(2, 20)}
    assert "MATRIX_LR 0.0566 -> 0.0952 (follows #1)" in follows  # further up, the grown step
    assert not any("0.0566 -> 0.0337 (follows" in d for d in follows)
    # not when the last proposal was refused (it may have been this one), nor once it ran
    again = {propose(tmp_path, n, journal=journal, train_py=kept, feedback="a duplicate")[0]
             for n in range(2, 20)}
    assert not any("follows" in d for d in again)
    journal.append(entry(2, set_values(kept, MATRIX_LR="0.0952"), f"{1:07x}"))
    after = {propose(tmp_path, n, journal=journal, train_py=kept)[0] for n in range(3, 30)}
    assert not any("follows" in d for d in after)


def test_combines_near_misses(tmp_path):
    base = entry(0, LANDSCAPE_PY, "0000000", "keep", None, kind="baseline")
    near = [entry(1, set_values(LANDSCAPE_PY, MATRIX_LR="0.0566"), "0000000", delta=-0.0005),
            entry(2, set_values(LANDSCAPE_PY, WARMDOWN_RATIO="0.6"), "0000000", delta=-0.0003),
            entry(3, set_values(LANDSCAPE_PY, EMBEDDING_LR="0.85"), "0000000", delta=0.002)]
    proposed = {propose(tmp_path, n, journal=[base, *near], train_py=LANDSCAPE_PY)[0]
                for n in range(4, 40)}
    assert "MATRIX_LR 0.04 -> 0.0566, WARMDOWN_RATIO 0.5 -> 0.6 (combines #1, #2)" in proposed
    assert not any("#3" in d for d in proposed)  # worse than its parent: no near-miss
    # a near-miss whose knob has moved since does not apply to the best any more
    moved = set_values(LANDSCAPE_PY, WARMDOWN_RATIO="0.4")
    journal = [base, *near, entry(4, moved, "0000000", "keep", -0.002)]
    proposed = {propose(tmp_path, n, journal=journal, train_py=moved)[0] for n in range(5, 40)}
    assert not any("combines" in d for d in proposed)


def test_widens_and_switches_on_a_plateau(tmp_path):
    journal = [entry(0, LANDSCAPE_PY, "0000000", "keep", None, kind="baseline")]
    tried = ("0.02", "0.08", "0.03", "0.06", "0.025", "0.07", "0.035", "0.05", "0.045", "0.028",
             "0.033", "0.055")
    journal += [entry(n, set_values(LANDSCAPE_PY, MATRIX_LR=lr), "0000000")
                for n, lr in enumerate(tried, 1)]  # 12 failures, all on MATRIX_LR
    plain, plateau = [], []
    for n in range(13, 60):
        plain.append(propose(tmp_path, n, journal=journal, train_py=LANDSCAPE_PY)[1])
        plateau.append(propose(tmp_path, n, journal=journal, train_py=LANDSCAPE_PY,
                               plateau=len(tried))[1])
    others = ("EMBEDDING_LR", "UNEMBEDDING_LR", "SCALAR_LR")
    # one level up: x or / 2**(3/4) instead of 2**(1/2)
    assert set().union(*(lr_steps(LANDSCAPE_PY, t, others) for t in plain)) == {2, -2}
    assert set().union(*(lr_steps(LANDSCAPE_PY, t, others) for t in plateau)) == {3, -3}

    def moved(text: str) -> set[str]:
        new = top_level_values(text)
        return {k for k, v in top_level_values(LANDSCAPE_PY).items() if new[k] != v}

    # knobs no run has moved come first: MATRIX_LR only ever in a pair
    assert all(moved(t) != {"MATRIX_LR"} for t in plateau)
    pairs = [sum(len(moved(t) - {"DEVICE_BATCH_SIZE"}) == 2 for t in runs)
             for runs in (plain, plateau)]
    assert pairs[1] > pairs[0]  # and pairs come more often


# Steps from the real train.py's values to within 0.01 of the optimum (about a quarter of the
# way from the start, 0.045), for seeds 0-5, noise and threshold as above. The old sweep (random
# single or paired moves by fixed factors, no memory but the descriptions) took 50 133 79 39 58
# 51, the sweep that reads the journal takes 24 65 40 50 38 32.
SEARCH_SEEDS = range(6)
TARGET_GAP = 0.01
MAX_STEPS = 80  # for each seed (the old sweep: 133 for seed 1)
MAX_TOTAL_STEPS = 300  # over the seeds (the old sweep: 410)


def test_reaches_the_optimum_faster_than_a_memoryless_sweep(tmp_path):
    steps = [steps_to(tmp_path / str(seed), TARGET_GAP, seed, MAX_STEPS) for seed in SEARCH_SEEDS]
    assert None not in steps, steps
    assert sum(steps) <= MAX_TOTAL_STEPS, steps


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


CPU_OVERRIDES = ["DEPTH", "ASPECT_RATIO", "HEAD_DIM", "DEVICE_BATCH_SIZE", "TOTAL_BATCH_SIZE",
                 "FINAL_EVAL_BATCH_SIZE"]


def test_the_constants_each_profile_replaces_come_from_train_py():
    assert profile_overrides(TRAIN_PY, "cpu") == CPU_OVERRIDES
    assert profile_overrides(TRAIN_PY, "cpu@5s") == CPU_OVERRIDES  # a shortened budget
    # consumer scales the batches from their lines (a change still counts), but replaces the
    # evaluation batch; h100 is the top level itself
    assert profile_overrides(TRAIN_PY, "consumer") == ["FINAL_EVAL_BATCH_SIZE"]
    assert profile_overrides(TRAIN_PY, "h100") == [] and profile_overrides(TRAIN_PY, "") == []


def test_the_sweep_never_moves_what_the_profile_replaces(tmp_path):
    for n in range(1, 40):
        description, text = propose(tmp_path, n, profile="cpu")
        moved = {name for name, value in top_level_values(text).items()
                 if value != CONSTANTS[name].value}
        assert moved and not moved & set(CPU_OVERRIDES), description


def profile_repo(path: Path) -> Path:
    """A loop repo whose harness profile is cpu and whose train.py replaces VAL_BPB and
    MATRIX_LR on it, as the real train.py replaces DEPTH: only SPEED_EFFECT is a live knob."""
    repo = make_repo(path)
    (repo / "constants.py").write_text('PROFILE = "cpu"\nTIME_BUDGET = 5\n')
    block = 'from constants import PROFILE\n\nif PROFILE == "cpu":\n' \
            '    VAL_BPB, MATRIX_LR = 1.0, 0.04\n\n\n'
    train = FAKE_TRAIN.replace("\n\ndef offset():", f"\n{block}def offset():")
    (repo / "train.py").write_text(train)
    git(repo, "commit", "-qam", "a cpu profile that replaces two constants")
    return repo


@pytest.mark.slow
def test_the_loop_tells_every_agent_what_the_profile_replaces(tmp_path):
    repo = profile_repo(tmp_path / "sweep")
    run_loop(repo, [None] * 4, agent=make_agent("sweep"), max_experiments=4)
    rows = [r for r in tag_rows(repo) if r.kind == "experiment"]
    assert len(rows) == 4
    assert all("SPEED_EFFECT" in r.description and "VAL_BPB" not in r.description
               and "MATRIX_LR" not in r.description for r in rows), [r.description for r in rows]
    # an LLM agent's prompt names them, from the same reading of train.py
    repo = profile_repo(tmp_path / "llm")
    _, agent, _ = run_loop(repo, [edit("faster", SPEED_EFFECT=0.01)])
    assert "The runs use the `cpu` profile: train.py's `if PROFILE == ...` block replaces " \
           "VAL_BPB, MATRIX_LR, so changing their top-level values has no effect." \
           in cli_prompt(agent.requests[0])

"""The journal digest: the whole night in a bounded prompt section, however long the night."""

import random
from collections import Counter
from pathlib import Path

import pytest

from autoresearch.memory.digest import (
    CHARS_PER_TOKEN,
    DIGEST_TOKENS,
    build_digest,
    program_ideas,
    theme,
    untried_ideas,
)
from autoresearch.memory.fingerprint import changes, fingerprint
from autoresearch.memory.journal import Entry
from autoresearch.memory.literals import find_constants

ROOT = Path(__file__).parent.parent
TRAIN_PY = (ROOT / "train.py").read_text()  # the real ones
PROGRAM_MD = (ROOT / "program.md").read_text()


def run(n: int, kind: str, edits: list[tuple[str, str]], description: str, status: str,
        bpb: float | None = None, parent_bpb: float = 0.998, reason: str = "",
        links: dict | None = None) -> Entry:
    """A journal entry for the real train.py with `edits` applied, its changes and fingerprint
    made by the real fingerprint module."""
    new = TRAIN_PY
    for old, replacement in edits:
        assert new.count(old) == 1
        new = new.replace(old, replacement)
    delta = None if bpb is None or kind in ("baseline", "noise") else round(bpb - parent_bpb, 6)
    return Entry(n, kind, f"c{n:06d}", "c000000", 0, description, changes=changes(TRAIN_PY, new),
                 fingerprint=fingerprint(new), status=status, val_bpb=bpb, delta=delta,
                 reason=reason, links=links or {})


MLP = ("F.relu(self.c_fc(x)).square()", "F.gelu(self.c_fc(x))")
SMALL = [
    run(0, "baseline", [], "baseline", "keep", 0.998),
    run(1, "noise", [], "baseline (noise run 1)", "discard", 0.9984, reason="noise"),
    run(2, "experiment", [("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")], "raise the Muon LR",
        "keep", 0.995),
    run(3, "experiment", [MLP], "GELU instead of ReLU squared", "crash", reason="oom"),
    run(4, "experiment", [("WARMDOWN_RATIO = 0.5", "WARMDOWN_RATIO = 0.6")], "longer warmdown",
        "discard", 0.9945, 0.995, reason="not confirmed: mean of 2 runs 0.994700"),
    run(5, "confirm", [("WARMDOWN_RATIO = 0.5", "WARMDOWN_RATIO = 0.6")],
        "confirm #4: longer warmdown", "discard", 0.9949, 0.995),
    run(6, "experiment", [("EMBEDDING_LR = 0.6", "EMBEDDING_LR = 0.45")], "lower embedding LR",
        "discard", 0.9947, 0.995, reason="not confirmed: -0.000100 vs control 0.995000"),
    run(7, "experiment", [("WARMUP_RATIO = 0.0", "WARMUP_RATIO = 0.05"),
                          ("WARMDOWN_RATIO = 0.5", "WARMDOWN_RATIO = 0.6")],
        "longer warmdown again, with a short warmup", "keep", 0.9925, 0.995,
        links={"retry_of": 4}),
    run(8, "experiment", [("DEPTH = 8", "DEPTH = 12")], "deeper", "crash", reason="timeout"),
    run(9, "control", [], "control for #6: its parent again", "discard", 0.9951, 0.995,
        reason="control for #6", links={"control_for": 6}),
]
SMALL_PROGRAM = """\
# program

## Rules

- Only train.py changes.

## Directions worth trying

- Hyperparameters: learning rates, weight decay, final LR fraction (keep it
  small), the warmup.
- Architecture: weight tying; normalization placement
- Try label smoothing
"""


def test_a_small_journal_exactly():
    assert build_digest(SMALL, SMALL_PROGRAM) == """\
10 runs, 6 of them experiments: 2 kept, 2 discarded, 2 crashed. \
Best val_bpb 0.992500 (#7 c000007), -0.0055 vs the baseline 0.998000.

What worked (the kept chain, in order; delta vs its parent):
  #0 0.998000 baseline
  #2 0.995000 -0.0030 raise the Muon LR
  #7 0.992500 -0.0025 longer warmdown again, with a short warmup (retry of #4)

What failed, by theme (tries, best delta vs parent):
  architecture: 1 try (1 crashed)
  code: MLP: 1 try (1 crashed)
  learning rates: 1 try, best -0.0003 #6 EMBEDDING_LR 0.6 -> 0.45
  schedule: 1 try, best -0.0005 #4 WARMDOWN_RATIO 0.5 -> 0.6

Near misses (gained on their parent, not kept; worth combining):
  #6 -0.0003 lower embedding LR (not confirmed)

Crashes, by cause (avoid):
  oom: 1 run, e.g. #3 GELU instead of ReLU squared
  timeout: 1 run, e.g. #8 deeper

Ideas from program.md not tried yet:
  Hyperparameters: weight decay; final LR fraction
  Architecture: weight tying; normalization placement
  Try label smoothing

Re-tries, reversals, ports and fixes:
  #7 (retry of #4): keep -0.0025, longer warmdown again, with a short warmup
"""


def test_an_empty_journal_lists_every_idea():
    assert build_digest([], SMALL_PROGRAM) == """\
No runs yet.

Ideas from program.md not tried yet:
  Hyperparameters: learning rates; weight decay; final LR fraction; the warmup
  Architecture: weight tying; normalization placement
  Try label smoothing
"""
    assert build_digest([], "") == "No runs yet.\n"


def test_the_ideas_of_the_real_program_md():
    ideas = [idea.text for idea in program_ideas(PROGRAM_MD)]
    assert {"learning rates per parameter group", "final LR fraction", "weight decay",
            "depth versus width", "the logit soft-cap", "weight tying",
            "gradient clipping"} <= set(ideas)
    assert not any("Only `train.py` changes" in idea for idea in ideas)  # a rule, not an idea
    tried = [run(1, "experiment", [("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")], "Muon LR up",
                 "discard", 0.999),
             run(2, "experiment", [("WEIGHT_DECAY = 0.2", "WEIGHT_DECAY = 0.1")], "less decay",
                 "discard", 0.999),
             run(3, "experiment", [("SOFTCAP = 15.0", "SOFTCAP = 30.0")], "looser cap",
                 "discard", 0.999)]
    untried = {idea.text for idea in untried_ideas(PROGRAM_MD, tried)}
    assert {"learning rates per parameter group", "weight decay", "the logit soft-cap"}.isdisjoint(
        untried)
    # a shared word is not enough: MATRIX_LR is no final LR fraction, weight decay no weight tying
    assert {"final LR fraction", "weight tying", "gradient clipping"} <= untried


def test_the_themes_of_train_py_constants_and_code():
    expected = {
        "ASPECT_RATIO": "architecture", "HEAD_DIM": "architecture", "DEPTH": "architecture",
        "WINDOW_PATTERN": "architecture", "SOFTCAP": "architecture",
        "EMBEDDING_LR": "learning rates", "UNEMBEDDING_LR": "learning rates",
        "MATRIX_LR": "learning rates", "SCALAR_LR": "learning rates",
        "WARMUP_RATIO": "schedule", "WARMDOWN_RATIO": "schedule", "FINAL_LR_FRAC": "schedule",
        "WEIGHT_DECAY": "regularisation", "ADAM_BETAS": "optimiser betas/momentum",
        "TOTAL_BATCH_SIZE": "batch size", "DEVICE_BATCH_SIZE": "batch size",
        "FINAL_EVAL_BATCH_SIZE": "batch size", "SEED": "other constants",
        "EXCLUDED_STEPS": "other constants"}
    assert set(expected) == set(find_constants(TRAIN_PY))
    for name, c in find_constants(TRAIN_PY).items():
        assert theme(f"{name} {c.text} -> 1") == expected[name], name
    assert theme("def norm (changed)") == "code: norm"
    assert theme("class MLP (added)") == "code: MLP"
    assert theme("if PROFILE == 'cpu': (changed)") == "other code"
    assert theme("FA4_WARMUP (changed)") == "other code"  # a multi-line string: code, not a knob
    assert theme("DROPOUT = 0.1 (added)") == theme("DROPOUT (removed)") == "regularisation"
    assert theme("comments only") is None


# ---------------------------------------------------------------------------------------------
# A long night: a seeded synthetic journal of 500 experiments

KNOBS = {  # constant: (its theme, the values a night tries)
    "MATRIX_LR": ("learning rates", ("0.02", "0.03", "0.05", "0.06")),
    "EMBEDDING_LR": ("learning rates", ("0.3", "0.45", "0.9")),
    "WARMDOWN_RATIO": ("schedule", ("0.3", "0.4", "0.6")),
    "WARMUP_RATIO": ("schedule", ("0.05", "0.1")),
    "WEIGHT_DECAY": ("regularisation", ("0.1", "0.14", "0.28")),
    "ADAM_BETAS": ("optimiser betas/momentum", ("(0.85, 0.95)", "(0.8, 0.975)")),
    "TOTAL_BATCH_SIZE": ("batch size", ("2**18", "2**20")),
    "DEPTH": ("architecture", ("7", "9", "10")),
}
CODE = {"def norm": "RMSNorm with a learned gain", "class MLP": "SwiGLU instead of ReLU squared",
        "def lr_multiplier": "cosine decay instead of linear"}
CRASHES = {"oom": "double DEVICE_BATCH_SIZE", "timeout": "DEPTH 24 for more capacity",
           "syntax": "fused QKV projection", "nan": "embedding LR 3.0"}
THRESHOLD = 0.001
NEVER_TRIED = ("the attention window pattern", "the logit soft-cap", "weight tying",
               "gradient clipping")  # program.md ideas that no run of long_night touches


def long_night(experiments: int, seed: int):
    """A journal as a loop would write it (baseline, noise runs, experiments with confirmations,
    crashes and re-tries) and, from the generator's own bookkeeping, the failed tries per theme
    and the crashes per cause."""
    rng = random.Random(seed)
    best, parent = 0.998, "c000000"
    entries = [Entry(0, "baseline", parent, parent, 0, "baseline", status="keep", val_bpb=best)]
    entries += [Entry(n, "noise", parent, parent, 0, "baseline again", status="discard",
                      val_bpb=best + rng.gauss(0, 0.0003), reason="noise") for n in (1, 2)]
    failed, crashed = Counter(), Counter()
    for _ in range(experiments):
        n = len(entries)
        entry = Entry(n, "experiment", f"c{n:06d}", parent, rng.randrange(4), "")
        roll = rng.random()
        if roll < 0.1:
            cause = rng.choice(sorted(CRASHES))
            entry.description, entry.changes = CRASHES[cause], ["def main (changed)"]
            entry.status, entry.reason = "crash", cause
            failed["code: main"] += 1
            crashed[cause] += 1
            entries.append(entry)
            continue
        if roll < 0.25:
            code = rng.choice(sorted(CODE))
            entry.description, entry.changes = CODE[code], [f"{code} (changed)"]
            themes = [f"code: {code.split()[1]}"]
        else:
            names = rng.sample(sorted(KNOBS), 2 if rng.random() < 0.2 else 1)
            entry.changes = [f"{name} {rng.choice(['0.04', '0.5', '8'])} -> "
                             f"{rng.choice(KNOBS[name][1])}" for name in names]
            entry.description = "sweep: " + ", ".join(entry.changes)
            themes = list(dict.fromkeys(KNOBS[name][0] for name in names))
        entry.delta = round(rng.gauss(0.0008, 0.0015), 6)
        entry.val_bpb = best + entry.delta
        entry.fingerprint = f"{rng.getrandbits(48):012x}"
        if rng.random() < 0.05 and n > 10:
            entry.links = {"retry_of": rng.randrange(3, n)}
        gain = -entry.delta
        confirmed = gain > 2 * THRESHOLD or (gain > THRESHOLD and rng.random() < 0.5)
        entry.status = "keep" if confirmed else "discard"
        if THRESHOLD < gain <= 2 * THRESHOLD and not confirmed:
            entry.reason = "not confirmed: mean of 2 runs"
        entries.append(entry)
        if THRESHOLD < gain <= 2 * THRESHOLD:
            entries.append(Entry(len(entries), "confirm", entry.commit, parent, entry.worker,
                                 f"confirm #{n}", status=entry.status, val_bpb=entry.val_bpb,
                                 delta=entry.delta, changes=entry.changes))
        if confirmed:
            best, parent = entry.val_bpb, entry.commit
        else:
            for name in themes:
                failed[name] += 1
    return entries, failed, crashed


def kept_chain(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.status == "keep" and e.kind in ("baseline", "experiment")]


def section(digest: str, title: str) -> str:
    start = digest.index(title)
    end = digest.find("\n\n", start)
    return digest[start: end if end >= 0 else len(digest)]


def test_a_long_night_fits_and_keeps_what_matters():
    entries, failed, crashed = long_night(500, seed=7)
    chain = kept_chain(entries)
    assert len(chain) > 30 and len(failed) >= 6 and len(crashed) == len(CRASHES)  # a real test
    digest = build_digest(entries, PROGRAM_MD)
    assert len(digest) <= DIGEST_TOKENS * CHARS_PER_TOKEN
    first, last = chain[0], chain[-1]
    assert f"\n  #0 {first.val_bpb:.6f} baseline\n" in digest
    assert f"\n  #{last.n} {last.val_bpb:.6f} {last.delta:+.4f} " in digest
    assert f"Best val_bpb {last.val_bpb:.6f} (#{last.n} {last.commit})" in digest
    for name, count in failed.items():
        assert f"\n  {name}: {count} tries" in digest, name
    for cause, count in crashed.items():
        assert f"\n  {cause}: {count} runs, e.g. #" in digest, cause
    ideas = section(digest, "Ideas from program.md not tried yet:")
    for untried in NEVER_TRIED:
        assert untried in ideas
    for tried in ("weight decay", "Adam betas", "batch size", "depth versus width"):
        assert tried not in ideas
    assert "(retry of #" in digest


@pytest.mark.parametrize("budget", [1200, 800, 500])
def test_a_long_night_degrades_gracefully(budget):
    entries, failed, crashed = long_night(500, seed=7)
    chain = kept_chain(entries)
    digest = build_digest(entries, PROGRAM_MD, budget)
    assert len(digest) <= budget * CHARS_PER_TOKEN
    assert f"\n  #0 {chain[0].val_bpb:.6f} baseline\n" in digest
    assert f"\n  #{chain[-1].n} {chain[-1].val_bpb:.6f} " in digest
    assert "more kept ..." in digest  # the middle of the chain, counted
    top = failed.most_common(1)[0]
    assert f"\n  {top[0]}: {top[1]} tries" in digest
    for cause, count in crashed.items():
        assert f"\n  {cause}: {count} runs" in digest
    assert any(idea in section(digest, "Ideas from program.md") for idea in NEVER_TRIED)


def test_no_budget_is_ever_exceeded():
    entries, _, _ = long_night(500, seed=3)
    for budget in range(0, 2200, 149):  # every rung of the ladder, and the final cut
        assert len(build_digest(entries, PROGRAM_MD, budget)) <= budget * CHARS_PER_TOKEN


def test_a_near_miss_kept_later_is_not_offered_again():
    lower_lr = [("EMBEDDING_LR = 0.6", "EMBEDDING_LR = 0.5")]
    near = run(1, "experiment", lower_lr, "lower embedding LR", "discard", 0.9976)
    again = run(2, "experiment", lower_lr, "lower embedding LR again", "keep", 0.9950,
                links={"retry_of": 1})
    assert "Near misses" in build_digest([SMALL[0], near], "")
    assert "#1 -0.0004 lower embedding LR" in build_digest([SMALL[0], near], "")
    assert "Near misses" not in build_digest([SMALL[0], near, again], "")
    ported = run(2, "port", [("EMBEDDING_LR = 0.6", "EMBEDDING_LR = 0.5"),
                             ("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")], "lower embedding LR, "
                 "re-applied on the new best", "keep", 0.9950, links={"port_of": 1})
    assert ported.fingerprint != near.fingerprint
    assert "Near misses" not in build_digest([SMALL[0], near, ported], "")


@pytest.mark.parametrize("change, expected", [
    ("features.py:MATRIX_LR 0.04 -> 0.05", "learning rates"),
    ("model.py:def norm (changed)", "code: norm"),
    ("model.py:FA4_WARMUP (changed)", "other code"),
    ("if PROFILE == 'cpu': (changed)", "other code"),
])
def test_a_change_in_one_of_several_files_has_the_theme_of_its_item(change: str,
                                                                     expected: str) -> None:
    assert theme(change) == expected

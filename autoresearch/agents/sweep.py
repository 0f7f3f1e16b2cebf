"""sweep: the built-in control agent. No LLM, no key, no cost.

It is a random local search around the current best train.py: it reads the top-level ALL_CAPS
constants, changes one (sometimes two) by a rule that suits the kind of knob, and rewrites only
that literal, keeping the line's comment and layout. The choice is deterministic for a seed and
experiment number, and a change already in the history (same description, e.g.
`MATRIX_LR 0.04 -> 0.05`) is not proposed again. An LLM agent that cannot beat this is not
doing research.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

from autoresearch.agents.base import AgentRefused, AgentRequest, Proposal, Usage
from autoresearch.memory.literals import Constant, find_constants

LOG_FACTORS = (0.5, 0.7, 0.8, 1.25, 1.4, 2.0)  # learning rates and weight decay live on a log scale
RATIO_STEPS = (-0.2, -0.1, 0.1, 0.2)  # schedule fractions, clamped to [0, 1]
BETA1_STEPS = (-0.05, 0.05)
BETA2_FACTORS = (0.5, 2.0)  # applied to 1 - beta2: 0.95 -> 0.975 or 0.9
WINDOW_PATTERNS = ("L", "SL", "SSL", "SSSL", "SSSSSSSL")
ASPECT_STEP = 16
PAIR_PROBABILITY = 0.25  # how often to change two knobs at once
POWER_OF_TWO_RE = re.compile(r"2\s*\*\*\s*(\d+)")


@dataclass
class Mutation:
    changes: list[tuple[Constant, str]]  # constant, new source text of its value

    @property
    def names(self) -> set[str]:
        return {c.name for c, _ in self.changes}

    @property
    def description(self) -> str:
        ordered = sorted(self.changes, key=lambda change: change[0].line)
        return ", ".join(f"{c.name} {c.text} -> {new}" for c, new in ordered)


class SweepAgent:
    cost_known = True  # it costs nothing

    def __init__(self, seed: int = 0):
        self.name = "sweep"
        self.seed = seed

    def preflight(self) -> None:
        """Nothing to log in to."""

    def propose(self, request: AgentRequest) -> Proposal:
        if request.crash_log is not None:
            raise AgentRefused("sweep cannot fix a crash; revert to the best commit instead")
        constants = find_constants(request.train_py)
        tried = {" ".join(row.description.split()) for row in request.history}
        rng = random.Random(f"sweep:{self.seed}:{request.experiment}")
        mutation = choose(neighbours(constants), tried, rng)
        if mutation is None:
            raise AgentRefused("sweep has tried every neighbour of the current train.py")
        new_text = apply(request.train_py, mutation)
        compile(new_text, "train.py", "exec")  # a rule that breaks the file is a bug here
        (request.repo / "train.py").write_text(new_text, encoding="utf-8")
        return Proposal(mutation.description, Usage(cost_usd=0.0))


def neighbours(constants: dict[str, Constant]) -> list[Mutation]:
    """Every single-knob change the rules allow, in file order."""
    mutations = []
    for c in constants.values():
        texts = dict.fromkeys(t for t in _new_texts(c, constants) if t != c.text)
        mutations += [Mutation([(c, t)]) for t in texts]
    # halving the batch must halve the device batch too, so the total stays divisible by it
    total, device = constants.get("TOTAL_BATCH_SIZE"), constants.get("DEVICE_BATCH_SIZE")
    if total and device and type(total.value) is int and type(device.value) is int \
            and total.value % 2 == 0 and device.value % 2 == 0 and device.value > 1:
        mutations.append(Mutation([(total, _batch_text(total, total.value // 2)),
                                   (device, str(device.value // 2))]))
    return mutations


def _new_texts(c: Constant, constants: dict[str, Constant]) -> list[str]:
    name, value = c.name, c.value
    if name == "WINDOW_PATTERN" and isinstance(value, str):
        quote = c.text[0] if c.text[:1] in ("'", '"') else '"'
        return [f"{quote}{p}{quote}" for p in WINDOW_PATTERNS]
    if name == "ADAM_BETAS" and isinstance(value, tuple) and len(value) == 2 \
            and all(isinstance(b, (int, float)) for b in value):
        beta1, beta2 = value
        options = [(_clamp(beta1 + step, 0.5, 0.99), beta2) for step in BETA1_STEPS]
        options += [(beta1, _clamp(1 - (1 - beta2) * f, 0.8, 0.999)) for f in BETA2_FACTORS]
        return [f"({_float(b1)}, {_float(b2)})" for b1, b2 in options if (b1, b2) != value]
    if name == "DEPTH" and type(value) is int:
        return [str(d) for d in (value - 1, value + 1) if d >= 1]
    if name == "ASPECT_RATIO" and type(value) is int:
        return [str(a) for a in (value - ASPECT_STEP, value + ASPECT_STEP) if a >= ASPECT_STEP]
    if name == "TOTAL_BATCH_SIZE" and type(value) is int:
        return [_batch_text(c, value * 2)]  # doubling keeps divisibility; halving is paired above
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return []
    if name.endswith(("_RATIO", "_FRAC")) and 0 <= value <= 1:
        ratios = (_clamp(value + step, 0.0, 1.0) for step in RATIO_STEPS)
        return [_float(r) for r in ratios if r != value]
    if name.endswith("_LR") or "DECAY" in name or isinstance(value, float):
        if value == 0:
            return [_float(v) for v in (0.01, 0.1)] if "DECAY" in name else []
        return [_float(value * f) for f in LOG_FACTORS]
    return []  # other integers (HEAD_DIM, DEVICE_BATCH_SIZE, ...) are structural: leave them


def _clamp(x: float, low: float, high: float) -> float:
    return min(high, max(low, round(x, 4)))


def _float(x: float) -> str:
    """Three significant digits, always a float literal: 0.05, 0.0056, 5e-05, 1.0."""
    text = f"{x:.3g}"
    return text if any(ch in text for ch in ".e") else text + ".0"


def _batch_text(c: Constant, value: int) -> str:
    """Keep the `2**19` spelling when the file uses it."""
    if POWER_OF_TWO_RE.fullmatch(c.text) and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return str(value)


def choose(mutations: list[Mutation], tried: set[str], rng: random.Random) -> Mutation | None:
    """An untried single change, or now and then (or once singles run out) an untried pair."""
    order = list(mutations)
    rng.shuffle(order)
    fresh = [m for m in order if m.description not in tried]
    want_pair = rng.random() < PAIR_PROBABILITY
    if fresh and not want_pair:
        return fresh[0]
    for first, second in itertools.combinations(order, 2):
        if first.names.isdisjoint(second.names):
            pair = Mutation(first.changes + second.changes)
            if pair.description not in tried:
                return pair
    return fresh[0] if fresh else None


def apply(text: str, mutation: Mutation) -> str:
    """Rewrite only the value literals, right to left so earlier spans stay valid."""
    lines = text.splitlines(keepends=True)
    for c, new in sorted(mutation.changes, key=lambda ch: (ch[0].line, ch[0].start), reverse=True):
        line = lines[c.line]
        lines[c.line] = line[: c.start] + new + line[c.end:]
    return "".join(lines)

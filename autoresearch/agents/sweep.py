"""sweep: the built-in control agent. No LLM, no key, no cost.

A local search around the current best train.py that learns from the tag's journal. It reads
the top-level ALL_CAPS constants, moves one or two along a scale that suits the knob, and
rewrites only those literals, keeping each line's comment and layout. A target with several
editable files has the constants of all of them, named `path:NAME` (memory/literals.py). An LLM
agent that cannot beat this is not doing research.

A point is the full set of constants of a train.py (of every editable file). The sweep never
proposes a point that the journal holds (whatever came of it: kept, discarded, crashed) or that
another worker runs now.

Step sizes. Each knob has a level from MIN_LEVEL to MAX_LEVEL, read from the journal each time
(the agent keeps no state of its own, so a restart loses nothing). A knob starts at BASE_LEVEL;
a kept run that moved it adds LEVEL_UP; a run that moved it and measured no better than its
parent, or crashed, takes LEVEL_DOWN; a near-miss (better than its parent, not kept) leaves it.
A level means, per kind of knob:

    *_LR, *DECAY*, other floats    times or divided by 2**(level/4)      level 2: x1.41
    *_RATIO, *_FRAC in [0, 1]      +- 0.05 x level, clamped to [0, 1]
    ADAM_BETAS                     beta1 +- 0.025 x level, or 1 - beta2 times or divided by
                                   2**(level/2)
    DEPTH, ASPECT_RATIO            +- max(1, level // 2) layers, or that many times ASPECT_STEP
    TOTAL_BATCH_SIZE               times or divided by 2**max(1, level // 2); halving divides
                                   DEVICE_BATCH_SIZE too, so the total stays divisible by it
    WINDOW_PATTERN                 another of WINDOW_PATTERNS, whatever the level

The proposal is the first unmeasured point of these, in this order:
  1. follow, now and then (FOLLOW_PROBABILITY): when the best came from a kept move and no run
     on the best has made that move again yet, the same move at the knobs' (grown) levels;
  2. combine, now and then (COMBINE_PROBABILITY): near-misses that still apply to the best (the
     knobs they moved have not moved since) and that no later run has tried again, two or three
     together, the best deltas first;
  3. local: one knob at its level, or now and then (PAIR_PROBABILITY) two; knobs in random
     order, moves that no run on this best has made (that knob, that direction) first;
  4. any knob at any other level, nearest first; then any two of the moves of 3. When even
     those are all measured, it refuses.
After a proposal that was not run (request.feedback says why, e.g. it was a duplicate), 1 and 2
are skipped: they would come out the same again.

On a plateau (request.plateau > 0: that many experiments in a row without a keep) the search
widens and switches: every level goes up by PLATEAU_LEVELS, knobs that no run has moved yet come
first, pairs come PLATEAU_PAIR_PROBABILITY of the time, and in 4 larger steps come before
smaller ones.

Constants that the harness profile replaces (train.py's `if PROFILE == ...` block, read by
literals.profile_overrides: on `cpu` DEPTH, HEAD_DIM and the batch sizes) are never moved: a run
of such a move measures the same program.

The choice is deterministic for a seed, an experiment number and a worker.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from autoresearch.agents.base import AgentRefused, AgentRequest, InFlight, Proposal, Usage
from autoresearch.memory.journal import Entry
from autoresearch.memory.literals import Constant, constants_of, find_constants, profile_overrides
from autoresearch.model import AGENT_KINDS
from autoresearch.target import listed

BASE_LEVEL = 2.0  # x1.41 for a learning rate, +-0.1 for a schedule fraction, +-1 layer
LEVEL_UP = 1.0  # a kept move in a knob makes its next steps larger...
LEVEL_DOWN = 0.1  # ...a failed one smaller: one keep in ten holds the level. Under noise most
# runs fail, and a faster shrink (the classic 1/5 rule) ends in steps too small to measure
MIN_LEVEL, MAX_LEVEL = 1, 8  # x1.19 to x4 for a learning rate, +-0.05 to +-0.4 for a fraction
PLATEAU_LEVELS = 1  # added to every level on a plateau; 2 overshot in the landscape benchmark
FOLLOW_PROBABILITY = 0.5  # not every time, so that local steps keep their share of the runs
COMBINE_PROBABILITY = 0.25
PAIR_PROBABILITY = 0.25  # how often a local step moves two knobs at once
PLATEAU_PAIR_PROBABILITY = 0.5
MAX_NEAR_MISSES = 6  # the most promising ones combined; more only multiplies the candidates
WINDOW_PATTERNS = ("L", "SL", "SSL", "SSSL", "SSSSSSSL")
ASPECT_STEP = 16
BETA1_RANGE, BETA2_RANGE = (0.5, 0.99), (0.8, 0.999)
POWER_OF_TWO_RE = re.compile(r"2\s*\*\*\s*(\d+)")

Point = tuple  # a train.py's constants as sorted (name, value) pairs: hashable, comparable
Move = dict  # name -> (old value, new value)


@dataclass
class Mutation:
    changes: list[tuple[Constant, str]]  # constant, new source text of its value
    why: str = ""  # said after the changes, e.g. "follows #12"

    @property
    def names(self) -> set[str]:
        return {c.name for c, _ in self.changes}

    @property
    def description(self) -> str:
        ordered = sorted(self.changes, key=lambda change: change[0].line)
        text = ", ".join(f"{c.name} {c.text} -> {new}" for c, new in ordered)
        return f"{text} ({self.why})" if self.why else text


@dataclass
class Memory:
    """What the journal says about the search around the current best."""

    measured: set[Point] = field(default_factory=set)
    levels: dict[str, float] = field(default_factory=dict)  # knobs some run moved
    kept: tuple[int, Move] | None = None  # the run whose kept move made the best, and that move
    near_misses: list[tuple[float, int, Move]] = field(default_factory=list)  # delta, run, move
    tried_here: set[tuple] = field(default_factory=set)  # knob moves already run on this best

    def level(self, name: str) -> float:
        return self.levels.get(name, BASE_LEVEL)


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
        constants = constants_of(request.files)
        current = {name: c.value for name, c in constants.items()}
        memory = read_journal(request.journal, current)
        taken = memory.measured | inflight_points(request.inflight, current)
        rng = random.Random(f"sweep:{self.seed}:{request.experiment}:{request.worker}")
        fixed = {path: profile_overrides(text, request.profile)
                 for path, text in request.files.items()}
        knobs = {name: c for name, c in constants.items() if c.bare not in fixed[c.file]}
        mutation = first_new(candidates(knobs, memory, request, rng), current, taken)
        if mutation is None:
            raise AgentRefused(f"sweep has measured every neighbour of the current "
                               f"{listed(request.files)}")
        for name, text in apply_files(request.files, mutation).items():
            if text != request.files[name]:
                compile(text, name, "exec")  # a rule that breaks the file is a bug here
                (request.repo / name).write_text(text, encoding="utf-8")
        return Proposal(mutation.description, Usage(cost_usd=0.0))


# ---- memory: the journal read as a search history


def read_journal(entries: list[Entry], current: dict[str, object]) -> Memory:
    """Every measured point, each knob's level, the moves already made on the current best,
    the kept move that made it (unless a run on it made that move again), the near-misses."""
    memory = Memory()
    by_commit = {e.commit: _values(e.constants) for e in entries if e.constants}
    here = point(current)
    kept: dict[str, dict] = {}  # kept commit -> the directions of its move
    followed: set[str] = set()  # kept commits on which a run made the same move again
    best = ""  # the commit of the run that made the current best
    for e in entries:
        mine = _values(e.constants)
        if mine:
            memory.measured.add(point(mine))
        parent = by_commit.get(e.parent)
        if e.kind not in AGENT_KINDS or not mine or parent is None:
            continue
        move = {n: (parent[n], mine[n]) for n in current
                if n in parent and n in mine and parent[n] != mine[n]}
        if not move:
            continue
        memory.near_misses = [m for m in memory.near_misses if not _contains(move, m[2])]
        if point(parent) == here:
            memory.tried_here.update(_key(name, old, new) for name, (old, new) in move.items())
        if kept.get(e.parent) == _directions(move):
            followed.add(e.parent)
        if e.status == "keep":
            change = LEVEL_UP
            kept[e.commit] = _directions(move)
            if point(mine) == here:
                memory.kept, best = (e.n, move), e.commit
        elif e.status == "discard" and e.delta is not None and e.delta < 0:
            change = 0.0
            memory.near_misses.append((e.delta, e.n, move))
        else:
            change = -LEVEL_DOWN
        for name in move:
            memory.levels[name] = min(MAX_LEVEL, max(MIN_LEVEL, memory.level(name) + change))
    if best in followed:
        memory.kept = None
    return memory


def _contains(move: Move, part: Move) -> bool:
    """Whether a move sets every knob of `part` to the value `part` gave it."""
    return all(name in move and move[name][1] == new for name, (_, new) in part.items())


def inflight_points(inflight: list[InFlight], current: dict[str, object]) -> set[Point]:
    """What is queued or running now, as points on the current best: each change summary item
    `NAME old -> new` sets that constant. Work that changes code, not only constants, is no
    point of this search and is left out."""
    points = set()
    for work in inflight:
        values = dict(current)
        for item in work.changes:
            name, _, move = item.partition(" ")
            _, arrow, new = move.partition(" -> ")
            value = _parse(name, new) if arrow and name in current else None
            if value is None:
                break
            values[name] = value
        else:
            if work.changes:
                points.add(point(values))
    return points


def point(values: dict[str, object]) -> Point:
    return tuple(sorted(_values(values).items()))


def _values(constants: dict[str, object]) -> dict[str, object]:
    """The journal stores tuples as JSON lists: back to tuples, so points compare."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in constants.items()}


@functools.lru_cache(maxsize=4096)  # the same few literals are read for every candidate
def _parse(name: str, text: str) -> object | None:
    """The value of a literal as find_constants reads it (2**19 included), or None. `name` may
    be a `path:NAME` of a program of several files."""
    bare = name.rpartition(":")[2]
    try:
        found = find_constants(f"{bare} = {text}\n")
    except (SyntaxError, ValueError):
        return None
    return found[bare].value if bare in found else None


# ---- the candidates, most wanted first


def candidates(constants: dict[str, Constant], memory: Memory, request: AgentRequest,
               rng: random.Random) -> Iterator[Mutation]:
    """Every proposal the rules allow, in the order of the module docstring."""
    widen = PLATEAU_LEVELS if request.plateau > 0 else 0
    levels = {name: _round(min(MAX_LEVEL, memory.level(name) + widen)) for name in constants}
    if not request.feedback:
        if rng.random() < FOLLOW_PROBABILITY and memory.kept is not None:
            yield from follow(constants, memory.kept, levels)
        if rng.random() < COMBINE_PROBABILITY:
            yield from combine(constants, memory.near_misses)
    order = [c for c in constants.values() if moves(c, constants, 1)]
    rng.shuffle(order)
    if request.plateau > 0:
        order.sort(key=lambda c: c.name in memory.levels)  # untouched knobs first, stable
    pair = rng.random() < (PLATEAU_PAIR_PROBABILITY if request.plateau > 0 else PAIR_PROBABILITY)
    singles = [m for c in order for m in _shuffled(moves(c, constants, levels[c.name]), rng)]
    singles.sort(key=lambda m: all(_key(c.name, c.value, _parse(c.name, new)) in memory.tried_here
                                   for c, new in m.changes))  # untried moves first, stable
    if pair:
        yield from pairs(singles)
    yield from singles
    wider_first = request.plateau > 0
    for distance in range(1, MAX_LEVEL):
        for c in order:
            near = (levels[c.name] - distance, levels[c.name] + distance)
            for level in reversed(near) if wider_first else near:
                if MIN_LEVEL <= level <= MAX_LEVEL:
                    yield from moves(c, constants, level)
    yield from pairs(singles)


def follow(constants: dict[str, Constant], kept: tuple[int, Move],
           levels: dict[str, int]) -> Iterator[Mutation]:
    """The kept move again, in the same directions, at each knob's level."""
    n, move = kept
    changes = []
    for name, direction in _directions(move).items():
        if name in constants and direction and any(direction):
            changes += _shift(constants[name], direction, levels[name], constants) or []
    if changes:
        yield Mutation(changes, f"follows #{n}")


def combine(constants: dict[str, Constant], near_misses: list[tuple[float, int, Move]]
            ) -> Iterator[Mutation]:
    """Near-misses that still apply to the best, two or three at once."""
    usable = sorted((delta, n, move) for delta, n, move in near_misses
                    if all(name in constants and constants[name].value == old
                           for name, (old, _) in move.items()))
    usable = usable[:MAX_NEAR_MISSES]
    for size in (2, 3):
        for group in itertools.combinations(usable, size):
            moved = [name for _, _, move in group for name in move]
            if len(moved) != len(set(moved)):
                continue  # two of them move one knob: not a combination
            changes = [(constants[name], _literal(constants[name], new))
                       for _, _, move in group for name, (_, new) in move.items()]
            runs = ", ".join(f"#{n}" for _, n, _ in group)
            yield Mutation(changes, f"combines {runs}")


def pairs(singles: list[Mutation]) -> Iterator[Mutation]:
    for first, second in itertools.combinations(singles, 2):
        if first.names.isdisjoint(second.names):
            yield Mutation(first.changes + second.changes)


def first_new(mutations: Iterable[Mutation], current: dict[str, object],
              taken: set[Point]) -> Mutation | None:
    """The first mutation whose point is neither measured nor being measured."""
    for mutation in mutations:
        values = dict(current)
        values.update((c.name, _parse(c.name, new)) for c, new in mutation.changes)
        if values != current and point(values) not in taken:
            return mutation
    return None


# ---- one knob's moves


def moves(c: Constant, constants: dict[str, Constant], level: int) -> list[Mutation]:
    """The single-knob moves at a level: both directions along each of the knob's axes."""
    if c.bare == "WINDOW_PATTERN" and isinstance(c.value, str):
        return [Mutation([(c, _quoted(c, p))]) for p in WINDOW_PATTERNS if p != c.value]
    found = []
    for direction in _axes(c):
        step = _shift(c, direction, level, constants)
        if step and all(new != old.text for old, new in step):
            found.append(Mutation(step))
    return found


def _axes(c: Constant) -> list[tuple[int, ...]]:
    """The unit directions a knob moves in: two components for ADAM_BETAS, else one."""
    if _is_betas(c.value):
        return [(1, 0), (-1, 0), (0, 1), (0, -1)]
    return [(1,), (-1,)]


def _key(name: str, old: object, new: object) -> tuple:
    """A knob's move as a direction (`MATRIX_LR` up), or as its new value where it has none."""
    direction = _directions({name: (old, new)})[name]
    return (name, direction if direction else new)


def _directions(move: Move) -> dict[str, tuple[int, ...] | None]:
    """The signs of each knob's move: per component for a pair of betas; None where a move has
    no direction (a window pattern)."""
    found = {}
    for name, (old, new) in move.items():
        if _is_betas(old) and _is_betas(new):
            found[name] = tuple(_sign(b - a) for a, b in zip(old, new, strict=True))
        elif _is_number(old) and _is_number(new):
            found[name] = (_sign(new - old),)
        else:
            found[name] = None
    return found


def _shift(c: Constant, direction: tuple[int, ...], level: int,
           constants: dict[str, Constant]) -> list[tuple[Constant, str]] | None:
    """The changes that move a knob `level` steps in a direction, or None where that leaves the
    knob's range."""
    name, value, scale = c.bare, c.value, _scale(c)
    if scale == "betas":
        beta1, beta2 = value
        beta1 = _clamp(beta1 + direction[0] * 0.025 * level, *BETA1_RANGE)
        beta2 = _clamp(1 - (1 - beta2) * 2 ** (-direction[1] * level / 2), *BETA2_RANGE)
        return [(c, f"({_float(beta1)}, {_float(beta2)})")]
    sign, units = direction[0], max(1, level // 2)
    if scale == "depth":
        return [(c, str(value + sign * units))] if value + sign * units >= 1 else None
    if scale == "aspect":
        aspect = value + sign * units * ASPECT_STEP
        return [(c, str(aspect))] if aspect >= ASPECT_STEP else None
    if scale == "batch":
        return _batch(c, constants.get(_sibling(c, "DEVICE_BATCH_SIZE")), sign * units)
    if scale == "ratio":
        return [(c, _float(_clamp(value + sign * 0.05 * level, 0.0, 1.0)))]
    if scale == "log":
        if value == 0:  # a decay switched off: switch it on, small
            return [(c, _float(0.01 * 2 ** (level - 1)))] if sign > 0 and "DECAY" in name else None
        return [(c, _float(value * 2 ** (sign * level / 4)))]
    return None


def _scale(c: Constant) -> str | None:
    name, value = c.bare, c.value
    if name == "ADAM_BETAS" and _is_betas(value):
        return "betas"
    if type(value) is int and name in ("DEPTH", "ASPECT_RATIO", "TOTAL_BATCH_SIZE"):
        return {"DEPTH": "depth", "ASPECT_RATIO": "aspect", "TOTAL_BATCH_SIZE": "batch"}[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if name.endswith(("_RATIO", "_FRAC")) and 0 <= value <= 1:
        return "ratio"
    if name.endswith("_LR") or "DECAY" in name or isinstance(value, float):
        return "log"
    return None  # other integers (HEAD_DIM, DEVICE_BATCH_SIZE, ...) are structural: leave them


def _batch(total: Constant, device: Constant | None, doublings: int
           ) -> list[tuple[Constant, str]] | None:
    """Doubling keeps the total divisible by the device batch; halving divides both."""
    if doublings > 0:
        return [(total, _batch_text(total, total.value * 2**doublings))]
    factor = 2**-doublings
    if device is None or type(device.value) is not int or device.value % factor \
            or total.value % factor or device.value == factor:
        return None
    return [(total, _batch_text(total, total.value // factor)),
            (device, str(device.value // factor))]


def _literal(c: Constant, value: object) -> str:
    """Source text for a value another run gave this knob: exact, in the file's spelling."""
    if isinstance(value, str):
        return _quoted(c, value)
    if c.bare == "TOTAL_BATCH_SIZE" and type(value) is int:
        return _batch_text(c, value)
    return repr(value)  # the shortest text that reads back as the same number or tuple


def _quoted(c: Constant, text: str) -> str:
    quote = c.text[0] if c.text[:1] in ("'", '"') else '"'
    return f"{quote}{text}{quote}"


def _is_betas(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(_is_number(b) for b in value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _round(level: float) -> int:
    return math.floor(level + 0.5)


def _shuffled(items: list, rng: random.Random) -> list:
    rng.shuffle(items)
    return items


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


def _sibling(c: Constant, bare: str) -> str:
    """The name of another constant of the same file (`path:NAME` of several files)."""
    return c.name[: len(c.name) - len(c.bare)] + bare


def apply_files(files: dict[str, str], mutation: Mutation) -> dict[str, str]:
    """Every file of the program with the mutation's literals rewritten (apply), by path."""
    return {path: apply(text, Mutation([ch for ch in mutation.changes if ch[0].file == path]))
            for path, text in files.items()}


def apply(text: str, mutation: Mutation) -> str:
    """Rewrite only the value literals, right to left so earlier spans stay valid."""
    lines = text.splitlines(keepends=True)
    for c, new in sorted(mutation.changes, key=lambda ch: (ch[0].line, ch[0].start), reverse=True):
        line = lines[c.line]
        lines[c.line] = line[: c.start] + new + line[c.end:]
    return "".join(lines)

"""The whole night in one bounded prompt section: what a researcher reading the journal in the
morning would want to know before proposing the next experiment.

build_digest() writes, in priority order:

  1. what worked: the kept chain in order, each run with its delta against its parent;
  2. what failed, grouped by theme (see THEMES), with the number of tries and the best result;
  3. near misses: runs that gained on their parent but were not kept (inside the noise band,
     or not confirmed), worth combining;
  4. crashes, grouped by cause, with an example of each;
  5. ideas from program.md that no run appears to have tried (see untried_ideas);
  6. re-tries, reversals, ports and fixes (the journal's links), which also tag the lines
     above.

However long the night, the text fits the budget: it is written at the richest level of LADDER
that fits, so it loses examples first, then themes, then the middle of the kept chain (the first
and last kept runs stay, with a count between them), and is finally cut at a line boundary.
Tokens are estimated as characters / CHARS_PER_TOKEN, no tokenizer needed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from autoresearch.memory.fingerprint import COMMENTS_ONLY
from autoresearch.memory.journal import Entry
from autoresearch.redact import sanitize
from autoresearch.target import DEFAULT, Metric

DIGEST_TOKENS = 2000  # about a page: room for the night's shape without crowding out the code
CHARS_PER_TOKEN = 4  # the usual average for English and code; a budget is budget * 4 characters
DESCRIPTION_CHARS = 90  # one run's description in a line, cut beyond
REASON_CHARS = 40  # a crash cause (oom, timeout, ...: results.tsv's reason column), cut beyond
MEASUREMENTS = ("baseline", "noise", "control", "confirm")  # runs that measure code, not ideas

# A changed constant's theme is the first whose pattern its name matches (re.search), so
# ASPECT_RATIO is architecture before *_RATIO is schedule, and FINAL_LR_FRAC is schedule before
# *_LR is learning rates. Other constants are "other constants"; an edited function or class is
# "code: <name>"; any other statement is "other code". A discarded or crashed run counts in every
# theme its changes touch.
THEMES = (
    ("architecture", r"DEPTH|ASPECT|HEAD|WINDOW|SOFTCAP|LAYER|EMBD|DIM|VOCAB|MLP|ROPE|ROTARY"),
    ("schedule", r"WARMUP|WARMDOWN|COOLDOWN|SCHEDULE|_RATIO$|_FRAC$"),
    ("learning rates", r"(^|_)LR(_|$)|LEARNING_RATE"),
    ("regularisation", r"DECAY|DROPOUT"),
    ("optimiser betas/momentum", r"BETA|MOMENTUM|(^|_)EPS(_|$)"),
    ("batch size", r"BATCH"),
)
# `MATRIX_LR 0.04 -> 0.05`, `DROPOUT = 0.1 (added)`, `DROPOUT (removed)`; but not
# `FA4_WARMUP (changed)`, a value written over several lines: code rather than a knob. An item
# of a program of several files starts with its file: `features.py:SCALE 1.0 -> 1.41`
IN_FILE = r"(?:[^\s:]+:)?"
CONSTANT_CHANGE = re.compile(IN_FILE + r"([A-Z][A-Z0-9_]*) (?!\(changed\))")
DEFINITION_CHANGE = re.compile(IN_FILE + r"(?:def|class) (\w+) \(")  # `def norm (changed)`

# program.md: the bullets under a heading that matches IDEA_HEADINGS are ideas; a bullet that
# starts with a short `Label:` lists several, separated by commas or semicolons.
IDEA_HEADINGS = re.compile(r"\b(directions?|ideas?|try|trying|next|notes)\b", re.IGNORECASE)
BULLET = re.compile(r"\s*(?:[-*+]|\d+[.)])\s+(.*)")
LABEL = re.compile(r"([^:`(]{1,60}):\s+(.+)")
STOPWORDS = frozenset(
    "a an and any anything are as at be by do does each for from in into is it its more less "
    "fewer no not of on one or per same so than that the this to try use using versus via vs "
    "what which with".split())


@dataclass(frozen=True)
class Detail:
    """How much of each section to show: one rung of LADDER."""

    examples: int  # runs shown under each failed theme, besides its best
    themes: int  # failed themes shown; the rest are counted on one line
    chain: int  # kept runs shown: the first and the last ones, a count between them
    near: int  # near misses shown
    crash_examples: int  # example runs shown per crash cause
    ideas: int  # untried ideas shown
    links: int  # linked runs listed (links also tag every line they appear on)


LADDER = (
    Detail(examples=3, themes=12, chain=40, near=8, crash_examples=2, ideas=24, links=10),
    Detail(examples=2, themes=12, chain=40, near=6, crash_examples=1, ideas=24, links=6),
    Detail(examples=1, themes=10, chain=30, near=5, crash_examples=1, ideas=16, links=4),
    Detail(examples=0, themes=8, chain=20, near=4, crash_examples=1, ideas=12, links=2),
    Detail(examples=0, themes=6, chain=12, near=3, crash_examples=1, ideas=8, links=0),
    Detail(examples=0, themes=4, chain=6, near=2, crash_examples=0, ideas=6, links=0),
    Detail(examples=0, themes=2, chain=2, near=1, crash_examples=0, ideas=3, links=0),
)


@dataclass
class Idea:
    label: str  # the bullet's `Label:`, "" when it has none
    text: str  # the idea as program.md words it, without parenthesised asides


@dataclass
class Night:
    """The journal, grouped once; _render() then writes it at any level of detail."""

    entries: list[Entry]
    chain: list[Entry]  # kept runs, first per commit, in run order (the baseline first)
    themes: list[tuple[str, list[Entry]]]  # failed tries per theme, most tried first
    near: list[Entry]  # gained on their parent, not kept, best gain first
    crashes: list[tuple[str, list[Entry]]]  # per cause, most frequent first
    ideas: list[Idea]  # program.md's ideas that no run appears to have tried
    linked: list[Entry]  # experiments with links (not the confirm/control runs), in run order
    metric: Metric = DEFAULT.metric  # entries hold its loss; the text shows its own values


def build_digest(entries: list[Entry], program: str, budget_tokens: int = DIGEST_TOKENS,
                 metric: Metric = DEFAULT.metric) -> str:
    """The journal summarised for a prompt, at most budget_tokens * CHARS_PER_TOKEN characters;
    values are the metric's own (the entries hold its loss)."""
    limit = max(0, budget_tokens) * CHARS_PER_TOKEN
    night = replace(_summarise(entries, program), metric=metric)
    text = ""
    for detail in LADDER:
        text = _render(night, detail)
        if len(text) <= limit:
            return text
    return _clip(text, limit)


def _summarise(entries: list[Entry], program: str) -> Night:
    """Group the journal once: the chain, the failures by theme, the near misses (not those
    kept later: the same program, or a kept run links to them), the crashes by cause, the
    untried ideas, the links."""
    entries = sorted(entries, key=lambda e: e.n)
    tries = [e for e in entries if e.kind not in MEASUREMENTS]
    failed = [e for e in tries if e.status in ("discard", "crash")]
    kept = [e for e in entries if e.status == "keep"]
    settled = {n for e in kept for n in e.links.values()}  # re-tried or ported, then kept
    kept_programs = {e.fingerprint for e in kept if e.fingerprint}
    near = [e for e in failed if e.delta is not None and e.delta < 0 and e.n not in settled
            and not (e.fingerprint and e.fingerprint in kept_programs)]
    return Night(
        entries=entries,
        chain=_chain(entries),
        themes=_grouped(failed, themes_of),
        near=sorted(near, key=lambda e: e.delta),
        crashes=_grouped([e for e in entries if e.status == "crash"],
                         lambda e: [sanitize(e.reason or "unknown", REASON_CHARS)]),
        ideas=untried_ideas(program, tries),
        linked=[e for e in tries if e.links],
    )


def _chain(entries: list[Entry]) -> list[Entry]:
    """The kept runs in run order, each commit once (a confirmed keep has two kept runs)."""
    chain, commits = [], set()
    for e in entries:
        if e.status == "keep" and (e.kind == "baseline" or e.kind not in MEASUREMENTS) \
                and e.commit not in commits:
            chain.append(e)
            commits.add(e.commit)
    return chain


def _grouped(entries: list[Entry], keys: Callable[[Entry], list[str]]
             ) -> list[tuple[str, list[Entry]]]:
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        for key in keys(e):
            groups.setdefault(key, []).append(e)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def theme(change: str) -> str | None:
    """The theme of one item of a change summary (fingerprint.changes); None for `comments only`."""
    if change == COMMENTS_ONLY:
        return None
    definition = DEFINITION_CHANGE.match(change)
    if definition:
        return f"code: {definition.group(1)}"
    constant = CONSTANT_CHANGE.match(change)
    if not constant:
        return "other code"
    return next((name for name, pattern in THEMES if re.search(pattern, constant.group(1))),
                "other constants")


def themes_of(entry: Entry) -> list[str]:
    """Every theme the run's changes touch, in order; ["other"] when none is recorded."""
    found = [t for t in dict.fromkeys(theme(c) for c in entry.changes) if t]
    return found or ["other"]


# ---------------------------------------------------------------------------------------------
# Ideas from program.md


def program_ideas(program: str) -> list[Idea]:
    """The bullet items under program.md's idea headings (IDEA_HEADINGS), a `Label: a, b, c`
    bullet split into its items; a bullet's indented wrapped lines are joined to it, fenced
    code is skipped."""
    ideas: list[Idea] = []
    bullets: list[str] = []
    ideas_here = fenced = wrapping = False
    for line in program.splitlines():
        if line.lstrip().startswith("```"):
            fenced, wrapping = not fenced, False
        elif fenced:
            continue
        elif line.startswith("#"):
            ideas_here, wrapping = bool(IDEA_HEADINGS.search(line)), False
        elif ideas_here and (bullet := BULLET.fullmatch(line)):
            bullets.append(bullet.group(1))
            wrapping = True
        elif wrapping and line.startswith((" ", "\t")) and line.strip():
            bullets[-1] += " " + line.strip()
        else:
            wrapping = False
    for bullet in bullets:
        labelled = LABEL.fullmatch(bullet)
        label, body = (labelled.group(1), labelled.group(2)) if labelled else ("", bullet)
        for item in _items(body) if labelled else [body]:
            text = sanitize(re.sub(r"\s*\([^)]*\)", "", item).strip(" .;"), DESCRIPTION_CHARS)
            if text:
                ideas.append(Idea(label.strip(), text))
    return ideas


def _items(text: str) -> list[str]:
    """Split on commas and semicolons outside parentheses and backticks."""
    items, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "`":
            quoted = not quoted
        elif ch in "([" and not quoted:
            depth += 1
        elif ch in ")]" and not quoted:
            depth = max(0, depth - 1)
        elif ch in ",;" and depth == 0 and not quoted:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [re.sub(r"^\s*(?:and|or)\s+", "", item).strip() for item in items]


def untried_ideas(program: str, tries: list[Entry]) -> list[Idea]:
    """program.md's ideas that no run appears to cover, by keyword overlap.

    Keywords are an idea's lower-case words (hyphens joined: soft-cap -> softcap; a plural s
    dropped; STOPWORDS out); its distinctive keywords are those no other idea has (all of them
    when none is). A run covers an idea when its description, hypothesis, changes and themes
    match at least min(2, half, rounded up) of the distinctive keywords, where two words match
    when equal or when one starts with the other and the shorter has 4 letters or more
    (norm ~ normalization, frac ~ fraction).
    """
    ideas = program_ideas(program)
    words = [_keywords(idea.text) for idea in ideas]
    counts = Counter(w for ws in words for w in set(ws))
    runs = [_keywords(" ".join([e.description, e.hypothesis, *e.changes, *themes_of(e)]))
            for e in tries]
    untried = []
    for idea, ws in zip(ideas, words, strict=True):
        distinctive = [w for w in ws if counts[w] == 1] or ws
        need = min(2, math.ceil(len(distinctive) / 2))
        if not any(sum(_matches(w, run) for w in distinctive) >= need for run in runs):
            untried.append(idea)
    return untried


def _keywords(text: str) -> list[str]:
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", "", text.lower())
    words = (w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
             for w in re.findall(r"[a-z][a-z0-9]*", text))
    return list(dict.fromkeys(w for w in words if len(w) >= 2 and w not in STOPWORDS))


def _matches(word: str, run: list[str]) -> bool:
    return any(word == w or (min(len(word), len(w)) >= 4 and (word.startswith(w)
                                                                or w.startswith(word)))
               for w in run)


# ---------------------------------------------------------------------------------------------
# Writing it out


def _render(night: Night, detail: Detail) -> str:
    """The digest at one level of detail; sections with nothing to say are left out."""
    sections = [_header(night), _worked(night, detail), _failed(night, detail),
                _near(night, detail), _crashed(night, detail), _ideas(night, detail),
                _linked(night, detail)]
    return "\n\n".join(s for s in sections if s) + "\n"


def _header(night: Night) -> str:
    if not night.entries:
        return "No runs yet."
    tries = [e for e in night.entries if e.kind not in MEASUREMENTS]
    count = Counter(e.status for e in tries)
    text = (f"{len(night.entries)} runs, {len(tries)} of them experiments: {count['keep']} kept, "
            f"{count['discard']} discarded, {count['crash']} crashed.")
    measured = [e for e in night.chain if e.val_bpb is not None]
    stepped = [e for e in night.chain if e.best is not None]
    m = night.metric
    if stepped:  # the night's progress, as every view shows it: baseline minus kept gains
        last, gains = stepped[-1], -sum(e.delta or 0.0 for e in stepped)
        text += (f" Best {m.name} {m.value(last.best):.6f} (#{last.n} {last.commit}), "
                 f"{m.value(-gains):+.4f} vs the baseline {m.value(last.best + gains):.6f}.")
    elif measured:
        best, base = min(measured, key=lambda e: e.val_bpb), measured[0]
        text += f" Best {m.name} {m.value(best.val_bpb):.6f} (#{best.n} {best.commit})"
        if base is not best and base.kind == "baseline":
            text += (f", {m.value(best.val_bpb - base.val_bpb):+.4f} vs the baseline "
                     f"{m.value(base.val_bpb):.6f}")
        text += "."
    return text


def _worked(night: Night, detail: Detail) -> str:
    if not night.chain:
        return ""
    lines = ["What worked (the kept chain, in order; delta vs its parent):"]
    chain, shown = night.chain, max(2, detail.chain)
    if len(chain) <= shown:
        return "\n".join(lines + [_kept(e, night.metric) for e in chain])
    head = math.ceil(shown / 2)
    lines += [_kept(e, night.metric) for e in chain[:head]]
    lines.append(f"  ... {len(chain) - shown} more kept ...")
    lines += [_kept(e, night.metric) for e in chain[head - shown:]]
    return "\n".join(lines)


def _kept(e: Entry, metric: Metric) -> str:
    if e.kind == "baseline":
        return f"  #{e.n} {_bpb(e, metric)} baseline{_links(e)}"
    return f"  #{e.n} {_bpb(e, metric)} {_delta(e, metric)} {_what(e)}{_links(e)}"


def _failed(night: Night, detail: Detail) -> str:
    if not night.themes:
        return ""
    lines = ["What failed, by theme (tries, best delta vs parent):"]
    for name, runs in night.themes[:detail.themes]:
        crashed = sum(1 for e in runs if e.status == "crash")
        line = f"  {name}: {_count(len(runs), 'try', 'tries')}"
        line += f" ({crashed} crashed)" if crashed else ""
        measured = sorted((e for e in runs if e.delta is not None), key=lambda e: e.delta)
        if measured:
            best = measured[0]
            line += (f", best {_delta(best, night.metric)} #{best.n} {_what(best, name)}"
                     f"{_links(best)}")
        lines.append(line)
        lines += [f"    #{e.n} {_delta(e, night.metric)} {_what(e, name)}{_links(e)}"
                  for e in measured[1:1 + detail.examples]]
    rest = night.themes[detail.themes:]
    if rest:
        lines.append(f"  ... {len(rest)} more themes ({sum(len(r) for _, r in rest)} tries)")
    return "\n".join(lines)


def _near(night: Night, detail: Detail) -> str:
    if not night.near or not detail.near:
        return ""
    lines = ["Near misses (gained on their parent, not kept; worth combining):"]
    for e in night.near[:detail.near]:
        note = " (not confirmed)" if "not confirmed" in e.reason else ""
        lines.append(f"  #{e.n} {_delta(e, night.metric)} {_what(e)}{note}{_links(e)}")
    if len(night.near) > detail.near:
        lines.append(f"  ... {len(night.near) - detail.near} more")
    return "\n".join(lines)


def _crashed(night: Night, detail: Detail) -> str:
    if not night.crashes:
        return ""
    lines = ["Crashes, by cause (avoid):"]
    for reason, runs in night.crashes:
        line = f"  {reason}: {_count(len(runs), 'run', 'runs')}"
        examples = runs[-detail.crash_examples:] if detail.crash_examples else []
        if examples:
            line += ", e.g. " + "; ".join(f"#{e.n} {_what(e)}" for e in reversed(examples))
        lines.append(line)
    return "\n".join(lines)


def _ideas(night: Night, detail: Detail) -> str:
    if not night.ideas or not detail.ideas:
        return ""
    lines = ["Ideas from program.md not tried yet:"]
    shown: dict[str, list[str]] = {}
    for idea in night.ideas[:detail.ideas]:
        shown.setdefault(idea.label, []).append(idea.text)
    for label, texts in shown.items():
        lines.append(f"  {label}: {'; '.join(texts)}" if label else
                     "\n".join(f"  {text}" for text in texts))
    if len(night.ideas) > detail.ideas:
        lines.append(f"  ... {len(night.ideas) - detail.ideas} more")
    return "\n".join(lines)


def _linked(night: Night, detail: Detail) -> str:
    if not night.linked or not detail.links:
        return ""
    lines = ["Re-tries, reversals, ports and fixes:"]
    for e in night.linked[-detail.links:]:
        outcome = e.status + (f" {_delta(e, night.metric)}" if e.delta is not None else "")
        lines.append(f"  #{e.n}{_links(e)}: {outcome}, {_what(e)}")
    return "\n".join(lines)


def _what(entry: Entry, theme_name: str | None = None) -> str:
    """A run in a few words: under a constants theme, its changes in that theme
    (`MATRIX_LR 0.04 -> 0.05`); otherwise its description (its changes when it has none)."""
    if theme_name is not None:
        mine = [c for c in entry.changes if theme(c) == theme_name and CONSTANT_CHANGE.match(c)]
        if mine:
            return sanitize(", ".join(mine), DESCRIPTION_CHARS)
    return sanitize(entry.description or ", ".join(entry.changes) or "(no description)",
                    DESCRIPTION_CHARS)


def _links(entry: Entry) -> str:
    """` (retry of #12, port of #14)`: each link key with its underscores as spaces."""
    if not entry.links:
        return ""
    return " (" + ", ".join(f"{key.replace('_', ' ')} #{n}" for key, n in entry.links.items()) + ")"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _bpb(entry: Entry, metric: Metric) -> str:
    return "-" if entry.val_bpb is None else f"{metric.value(entry.val_bpb):.6f}"


def _delta(entry: Entry, metric: Metric) -> str:
    """The change against the parent in the metric's own terms (negative for a better val_bpb,
    positive for a better accuracy)."""
    return "-" if entry.delta is None else f"{metric.value(entry.delta):+.4f}"


def _clip(text: str, limit: int) -> str:
    """Cut at the last line boundary that fits, with a marker when there is room for one."""
    if len(text) <= limit:
        return text
    marker = "\n(cut to fit)\n"
    cut = text.rfind("\n", 0, max(0, limit - len(marker)))
    return text[:cut] + marker if cut > 0 else text[:limit]

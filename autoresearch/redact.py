"""Secrets never reach the terminal or a log: `redact(text)` is applied wherever the loop prints or
writes a message (events.log, the console, the CLI's error line, results.tsv cells).

Two nets. The registry: every secret the program was given (an agent's API key, registered by
make_agent) is cut out wherever a run of RUN or more of its characters appears, so a server that
echoes the key in an error message, whole or with a few characters masked, cannot leak it. The
patterns: anything that looks like a credential (`Bearer <token>`, `sk-...`, `x-api-key: ...`) is
cut out even when nobody registered it, e.g. a key a CLI agent read from its own config.

A masked echo such as `sk-proj-***ABCDE` is left alone when no run of RUN key characters survives
the mask: what remains cannot be used to reconstruct the key.
"""

from __future__ import annotations

import re

RUN = 8  # characters of a secret in a row that count as a leak; shorter runs occur by chance
MARK = "[redacted]"
PATTERNS = (  # (pattern, replacement): credentials nobody registered
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MARK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), MARK),  # OpenAI, Anthropic (sk-ant-), OpenRouter
    (re.compile(r"(?i)\b((?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=-]{8,}"),
     r"\1" + MARK),
)

_runs: set[str] = set()  # every RUN-character substring of every registered secret


def register_secret(value: str | None) -> None:
    """Remember `value` so that redact() cuts it out; values shorter than RUN are ignored."""
    if value and len(value) >= RUN:
        _runs.update(value[i:i + RUN] for i in range(len(value) - RUN + 1))


def redact(text: str) -> str:
    """`text` with every registered secret and every credential-looking token replaced."""
    text = _cut_registered(text)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _cut_registered(text: str) -> str:
    """Replace each stretch of text covered by RUN-character runs of a secret with MARK."""
    if not _runs or len(text) < RUN:
        return text
    covered_until, spans = -1, []  # spans: [start, end) of covered stretches, merged
    for i in range(len(text) - RUN + 1):
        if text[i:i + RUN] in _runs:
            if spans and i <= covered_until:
                spans[-1][1] = i + RUN
            else:
                spans.append([i, i + RUN])
            covered_until = i + RUN
    if not spans:
        return text
    parts, last = [], 0
    for start, end in spans:
        parts += [text[last:start], MARK]
        last = end
    return "".join(parts) + text[last:]

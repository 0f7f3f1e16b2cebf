"""Secrets never reach the terminal, a file or a commit: the one place text is cleaned of them.

`redact(text)` is applied wherever the loop prints or writes a message (events.log, the console,
the CLI's error line); `sanitize(text)` (one line, bounded, redacted) is how the agent's words
enter the loop, so results.tsv, journal.jsonl, live.json and commit messages never hold a key;
`redact_tree` cleans a JSON document before it is written (journal entries, live.json), for text
that reached the state some other way (an older session's state, a crash line). `run_env` is the
environment a training run gets: this process's, less every credential (CREDENTIAL_ENVS and
whatever is named like one), so a train.py that prints its environment leaks nothing.

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
from collections.abc import Mapping

RUN = 8  # characters of a secret in a row that count as a leak; shorter runs occur by chance
MARK = "[redacted]"
PATTERNS = (  # (pattern, replacement): credentials nobody registered
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MARK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), MARK),  # OpenAI, Anthropic (sk-ant-), OpenRouter
    (re.compile(r"(?i)\b((?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=-]{8,}"),
     r"\1" + MARK),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), MARK),  # GitHub
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), MARK),  # Hugging Face
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MARK),  # AWS access key ids
)

# Credentials of the agents and of services a machine-learning box usually holds: never given to
# a training run. Anything named like a credential (CREDENTIAL_NAME) is withheld as well.
CREDENTIAL_ENVS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CODEX_API_KEY",
                   "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN", "OPENROUTER_API_KEY",
                   "GITHUB_TOKEN", "GH_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                   "WANDB_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                   "AWS_SESSION_TOKEN", "AZURE_OPENAI_API_KEY", "GOOGLE_API_KEY",
                   "GEMINI_API_KEY", "SSH_AUTH_SOCK")
CREDENTIAL_NAME = re.compile(
    r"(?i)(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PRIVATE_KEY|ACCESS_KEY)$")

_runs: set[str] = set()  # every RUN-character substring of every registered secret


def register_secret(value: str | None) -> None:
    """Remember `value` so that redact() cuts it out; values shorter than RUN are ignored."""
    if value and len(value) >= RUN:
        _runs.update(value[i:i + RUN] for i in range(len(value) - RUN + 1))


def redact(text: str) -> str:
    """`text` with every registered secret and every credential-looking token replaced."""
    # the shapes first: a registered key shares its prefix ("sk-proj-") with any other key of
    # its kind, and cutting that prefix first would leave the other key whole but unrecognised
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return _cut_registered(text)


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


def sanitize(text: str, limit: int = 300) -> str:
    """One line, no tabs, bounded length, secrets cut out: safe to put in a TSV cell, a journal
    entry, a commit message or a prompt."""
    flat = " ".join(redact(str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def redact_tree(value: object) -> object:
    """A JSON-like document (dicts, lists, strings, numbers) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v) for v in value]
    return value


def is_credential(name: str) -> bool:
    """Whether an environment variable holds (or is named like) a credential."""
    return name in CREDENTIAL_ENVS or bool(CREDENTIAL_NAME.search(name))


def register_environment(env: Mapping[str, str]) -> None:
    """Register the value of every credential in `env`, whatever its shape: redact() then cuts
    it out of anything the loop writes (an agent may have read it from its environment)."""
    for name, value in env.items():
        if is_credential(name):
            register_secret(value)


def run_env(base: Mapping[str, str]) -> dict[str, str]:
    """`base` without the credentials a training run must never see."""
    return {k: v for k, v in base.items() if not is_credential(k)}

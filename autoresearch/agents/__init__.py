"""Agent backends: who proposes the next edit to train.py.

    sweep      built-in local search over the constants, guided by the journal (no LLM, no cost)
    claude     Claude Code CLI, headless (`claude -p`), edits train.py itself
    codex      OpenAI Codex CLI (`codex exec`), edits train.py itself
    openai     any OpenAI-compatible /chat/completions endpoint, answers with SEARCH/REPLACE edits
    anthropic  the Anthropic Messages API, answers with SEARCH/REPLACE edits

make_agent checks what a backend needs (key, executable) up front, so a missing one stops the
loop before it starts instead of at 3 am; agent.preflight() then checks what takes a process or a
request to know (logged in, key accepted). Every key make_agent sees is registered with
autoresearch.redact, so no message or log shows it.
"""

from __future__ import annotations

import os
import shutil

from autoresearch.agents.base import (
    Agent,
    AgentError,
    AgentRefused,
    AgentRequest,
    Proposal,
    Usage,
)
from autoresearch.agents.pricing import Price
from autoresearch.errors import UserError
from autoresearch.redact import register_secret

__all__ = ["Agent", "AgentError", "AgentRefused", "AgentRequest", "Proposal", "Usage",
           "BACKENDS", "make_agent", "price_option",
           "InFlight"]  # used from base.py

BACKENDS = ("sweep", "claude", "codex", "openai", "anthropic")
DEFAULT_TIMEOUT = 900.0  # seconds per API call or CLI run
# Credentials a CLI agent may read from our environment, and so may echo in an error.
CLI_KEY_ENVS = {"claude": ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
                "codex": ("CODEX_API_KEY", "OPENAI_API_KEY")}


def missing_key(key_env: str) -> UserError:
    return UserError(f"{key_env} is not set: export it (or name another variable with "
                     "--api-key-env), or use --agent sweep")


def price_option(price_in: float | None, price_out: float | None) -> Price | None:
    """--price-in/--price-out as one price: both or neither, USD per million tokens, >= 0."""
    if (price_in is None) != (price_out is None):
        raise UserError("--price-in and --price-out go together: pass both (USD per million "
                        "input and output tokens) or neither")
    if price_in is None or price_out is None:
        return None
    if price_in < 0 or price_out < 0:
        raise UserError("--price-in and --price-out are USD per million tokens: they cannot be "
                        "negative")
    return price_in, price_out


def make_agent(backend: str, *, model: str | None = None, base_url: str | None = None,
               api_key_env: str | None = None, timeout: float = DEFAULT_TIMEOUT,
               seed: int = 0, price: Price | None = None) -> Agent:
    """Build the backend named `backend`; a missing key or executable is a UserError now.

    `price` (USD per million input, output tokens) prices the tokens of an API model or of codex;
    it is refused for sweep (free) and claude (which reports its own cost).
    """
    # Backends are imported here, not at the top: they import prompt.py, which imports base.py.
    if backend not in BACKENDS:
        raise UserError(f"unknown agent {backend!r}: choose one of {', '.join(BACKENDS)}")
    if base_url and backend not in ("openai", "anthropic"):
        raise UserError(f"--base-url applies to --agent openai or anthropic, not {backend}")
    if api_key_env and backend not in ("openai", "anthropic"):
        raise UserError(f"--api-key-env applies to --agent openai or anthropic, not {backend}")
    if price is not None:
        price_option(*price)
        if backend in ("sweep", "claude"):
            reason = "it costs nothing" if backend == "sweep" else "it reports its own cost"
            raise UserError(f"--price-in/--price-out do not apply to --agent {backend}: {reason}")

    if backend == "sweep":
        if model:
            raise UserError("--model does not apply to --agent sweep (it uses no LLM)")
        from autoresearch.agents.sweep import SweepAgent

        return SweepAgent(seed=seed)

    if backend in ("claude", "codex"):
        executable = shutil.which(backend)
        if executable is None:
            product = "Claude Code" if backend == "claude" else "the Codex CLI"
            raise UserError(f"{backend} not found on PATH: install {product} or use --agent sweep")
        for name in CLI_KEY_ENVS[backend]:
            register_secret(os.environ.get(name))
        if backend == "claude":
            from autoresearch.agents.claude_cli import ClaudeAgent

            return ClaudeAgent(executable, model=model, timeout=timeout)
        from autoresearch.agents.codex_cli import CodexAgent

        return CodexAgent(executable, model=model, timeout=timeout, price=price)

    if backend == "openai":
        from autoresearch.agents import openai_api

        url = base_url or openai_api.DEFAULT_BASE_URL
        key_env = api_key_env or openai_api.DEFAULT_KEY_ENV
        key = os.environ.get(key_env)
        if not key and not openai_api.is_local(url):
            raise missing_key(key_env)
        register_secret(key)
        return openai_api.OpenAIAgent(model=model or openai_api.DEFAULT_MODEL, base_url=url,
                                      api_key=key, key_env=key_env, timeout=timeout, price=price)

    from autoresearch.agents import anthropic_api

    key_env = api_key_env or anthropic_api.DEFAULT_KEY_ENV
    key = os.environ.get(key_env)
    if not key:
        raise missing_key(key_env)
    register_secret(key)
    return anthropic_api.AnthropicAgent(api_key=key, model=model or anthropic_api.DEFAULT_MODEL,
                                        base_url=base_url or anthropic_api.DEFAULT_BASE_URL,
                                        key_env=key_env, timeout=timeout, price=price)

"""Agent backends: who proposes the next edit to train.py.

    sweep      built-in local search over the constants, guided by the journal (no LLM, no cost)
    claude     Claude Code CLI, headless (`claude -p`), edits train.py itself
    codex      OpenAI Codex CLI (`codex exec`), edits train.py itself
    openai     any OpenAI-compatible /chat/completions endpoint, answers with SEARCH/REPLACE edits
    anthropic  the Anthropic Messages API, answers with SEARCH/REPLACE edits

make_agent checks what a backend needs (key, executable) up front, so a missing one stops the
loop before it starts instead of at 3 am.
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
from autoresearch.errors import UserError

__all__ = ["Agent", "AgentError", "AgentRefused", "AgentRequest", "Proposal", "Usage",
           "BACKENDS", "make_agent"]

BACKENDS = ("sweep", "claude", "codex", "openai", "anthropic")
DEFAULT_TIMEOUT = 900.0  # seconds per API call or CLI run


def missing_key(key_env: str) -> UserError:
    return UserError(f"{key_env} is not set: export it (or name another variable with "
                     "--api-key-env), or use --agent sweep")


def make_agent(backend: str, *, model: str | None = None, base_url: str | None = None,
               api_key_env: str | None = None, timeout: float = DEFAULT_TIMEOUT,
               seed: int = 0) -> Agent:
    """Build the backend named `backend`; a missing key or executable is a UserError now."""
    # Backends are imported here, not at the top: they import prompt.py, which imports base.py.
    if backend not in BACKENDS:
        raise UserError(f"unknown agent {backend!r}: choose one of {', '.join(BACKENDS)}")
    if base_url and backend not in ("openai", "anthropic"):
        raise UserError(f"--base-url applies to --agent openai or anthropic, not {backend}")
    if api_key_env and backend not in ("openai", "anthropic"):
        raise UserError(f"--api-key-env applies to --agent openai or anthropic, not {backend}")

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
        if backend == "claude":
            from autoresearch.agents.claude_cli import ClaudeAgent

            return ClaudeAgent(executable, model=model, timeout=timeout)
        from autoresearch.agents.codex_cli import CodexAgent

        return CodexAgent(executable, model=model, timeout=timeout)

    if backend == "openai":
        from autoresearch.agents import openai_api

        url = base_url or openai_api.DEFAULT_BASE_URL
        key_env = api_key_env or openai_api.DEFAULT_KEY_ENV
        key = os.environ.get(key_env)
        if not key and not openai_api.is_local(url):
            raise missing_key(key_env)
        return openai_api.OpenAIAgent(model=model or openai_api.DEFAULT_MODEL, base_url=url,
                                      api_key=key, key_env=key_env, timeout=timeout)

    from autoresearch.agents import anthropic_api

    key_env = api_key_env or anthropic_api.DEFAULT_KEY_ENV
    key = os.environ.get(key_env)
    if not key:
        raise missing_key(key_env)
    return anthropic_api.AnthropicAgent(api_key=key, model=model or anthropic_api.DEFAULT_MODEL,
                                        base_url=base_url or anthropic_api.DEFAULT_BASE_URL,
                                        key_env=key_env, timeout=timeout)

"""OpenAI Codex CLI, non-interactive, editing train.py in the work tree.

    codex exec --json --sandbox workspace-write --skip-git-repo-check --cd <repo>
        [--model M] <prompt>

workspace-write lets it edit files in the work tree (the older --full-auto alias is deprecated and
removed in recent versions). --json prints JSONL events: the final message is the last
`item.completed` whose item is an `agent_message`; `turn.completed` carries usage (input_tokens,
cached_input_tokens, output_tokens); `turn.failed` / `error` report failures. Codex reports no
dollar cost (it may run on a ChatGPT plan): with a price given (--price-in/--price-out) the cost
is its tokens at that price, cached input counted as full input (an upper bound); else None.

Preflight: `codex login status` prints "Logged in using ..." and exits 0, or "Not logged in" and
exits 1. `codex exec` also takes a key from CODEX_API_KEY without a stored login, so with that
variable set there is nothing to check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from autoresearch.agents.base import AgentError, Usage
from autoresearch.agents.cli import CLIAgent, CLIResult
from autoresearch.agents.pricing import Price, dollars

KEY_ENV = "CODEX_API_KEY"  # read by `codex exec` in place of a stored login
NOT_LOGGED_IN = f"codex is not logged in: run `codex login`, or export {KEY_ENV}"


class CodexAgent(CLIAgent):
    tool = "codex"

    def __init__(self, executable: str, *, model: str | None = None, timeout: float = 900.0,
                 attempts: int = 3, retry_delay: float = 5.0, price: Price | None = None):
        super().__init__(executable, model=model, timeout=timeout, attempts=attempts,
                         retry_delay=retry_delay)
        self.price = price  # USD per million input/output tokens, given by the user
        self.cost_known = price is not None

    def preflight(self) -> None:
        if os.environ.get(KEY_ENV):
            return
        finished = self.status("login", "status")
        if finished.returncode == 0:
            return
        if "not logged in" in (finished.stderr + finished.stdout).lower():
            raise AgentError(NOT_LOGGED_IN)
        raise AgentError(f"cannot check the codex login: `codex login status` exited "
                         f"{finished.returncode} ({finished.tail() or 'no output'}); run "
                         "`codex login`")

    def argv(self, repo: Path, prompt: str) -> list[str]:
        argv = [self.executable, "exec", "--json", "--sandbox", "workspace-write",
                "--skip-git-repo-check", "--cd", str(repo)]
        return argv + (["--model", self.model] if self.model else []) + [prompt]

    def parse(self, stdout: str) -> CLIResult:
        message, usage, errors, completed, events = "", Usage(), [], False, 0
        for line in stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # warnings and other non-event lines
            if not isinstance(event, dict):
                continue
            events += 1
            kind = event.get("type")
            item = event.get("item") or {}
            if kind == "item.completed" and item.get("type") == "agent_message":
                message = str(item.get("text") or "")
            elif kind == "turn.completed":
                completed = True
                used = event.get("usage") or {}
                tokens_in = int(used.get("input_tokens") or 0)
                tokens_out = int(used.get("output_tokens") or 0)
                usage = usage + Usage(tokens_in, tokens_out,
                                      dollars(self.price, tokens_in, tokens_out))
            elif kind == "turn.failed":
                errors.append(str((event.get("error") or {}).get("message") or "turn failed"))
            elif kind == "error":
                errors.append(str(event.get("message") or "error"))
        if not events:
            raise ValueError("no JSON events")
        error = None if completed else (errors[-1] if errors else "no turn.completed event")
        return CLIResult(message, usage, error)

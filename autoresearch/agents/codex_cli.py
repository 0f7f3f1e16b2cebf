"""OpenAI Codex CLI, non-interactive, editing train.py in the work tree.

    codex exec --json --sandbox workspace-write --skip-git-repo-check --cd <repo>
        [--model M] -                                   (the prompt on stdin)

workspace-write lets it edit files in the work tree (the older --full-auto alias is deprecated and
removed in recent versions). --json prints JSONL events: the final message is the last
`item.completed` whose item is an `agent_message`; `turn.completed` carries usage (input_tokens,
cached_input_tokens, output_tokens); `turn.failed` / `error` report failures. Codex reports no
dollar cost (it may run on a ChatGPT plan): with a price given (--price-in/--price-out) the cost
is its tokens at that price, cached input counted as full input (an upper bound); else None.
`-` as the prompt makes it read the prompt from stdin. --cd is resolved against codex's own
working directory (the work tree, here), so it is always given absolute.

Offline, codex does not fail: it prints "Reconnecting... waiting for network" and waits for ever.
The first such line ends the call with one line that says so; it is not retried.

Preflight: `codex login status` prints "Logged in using ..." and exits 0, or "Not logged in" and
exits 1. `codex exec` also takes a key from CODEX_API_KEY without a stored login, so with that
variable set there is nothing to check.
"""

from __future__ import annotations

import os
from pathlib import Path

from autoresearch.agents.base import AgentError, Usage
from autoresearch.agents.cli import DESCRIPTION_LIMIT, CLIAgent, CLIResult, json_events
from autoresearch.agents.pricing import Price, dollars
from autoresearch.redact import sanitize

KEY_ENV = "CODEX_API_KEY"  # read by `codex exec` in place of a stored login
OFFLINE = "waiting for network"  # what codex prints, lower-cased, when it cannot connect
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

    def argv(self, repo: Path) -> list[str]:
        argv = [self.executable, "exec", "--json", "--sandbox", "workspace-write",
                "--skip-git-repo-check", "--cd", str(repo.absolute())]
        return argv + (["--model", self.model] if self.model else []) + ["-"]

    def give_up(self, output: str) -> str | None:
        for line in output.splitlines():
            if OFFLINE in line.lower():
                return (f"no network connection (it printed "
                        f"{sanitize(line, DESCRIPTION_LIMIT)!r} and would wait for ever): check "
                        "the network or proxy, then run the same command again")
        return None

    def narrate(self, stdout: str) -> list[str]:
        """Its messages and errors, from the JSON events."""
        lines = []
        for event in json_events(stdout):
            text = (event.get("item") or {}).get("text") or error_of(event)
            lines += str(text).splitlines() if text else []
        return lines + super().narrate(stdout)

    def parse(self, stdout: str) -> CLIResult:
        message, usage, errors, completed = "", Usage(), [], False
        events = json_events(stdout)  # warnings and other non-event lines are skipped
        for event in events:
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
            elif error := error_of(event):
                errors.append(error)
        if not events:
            raise ValueError("no JSON events")
        # an error event followed by turn.completed was retried and overcome
        return CLIResult(message, usage, None if completed or not errors else errors[-1],
                         completed)


def error_of(event: dict) -> str | None:
    """The message of an `error` or `turn.failed` event; None for other events."""
    if event.get("type") == "error":
        return str(event.get("message") or "error")
    if event.get("type") == "turn.failed":
        error = event.get("error")
        return str((error.get("message") if isinstance(error, dict) else error) or "turn failed")
    return None

"""Claude Code in headless (print) mode, editing train.py in the work tree.

    claude -p --output-format stream-json --verbose --permission-mode acceptEdits
        --allowedTools Read,Edit,Write [--model M]        (the prompt on stdin)

acceptEdits lets it edit files without asking; anything else it would need permission for (shell
commands) is denied, as there is nobody to ask. `claude -p` reads the prompt from stdin when no
prompt argument is given. stream-json (which needs --verbose in print mode) prints one JSON event
a line as the session goes: `system` (init), `assistant` and `user` messages, and last a `result`
event carrying `result` (the final message), `is_error`, `subtype`, `total_cost_usd` and `usage`.
Streaming, so that a run killed at the timeout can still quote what claude last said. A failed
run can still say subtype "success": with is_error true, `result` is the error ("Not logged in ·
Please run /login", "Invalid API key · Fix external API key").

Preflight: `claude auth status` prints the login as JSON ({"loggedIn": ..., "authMethod": ...})
and exits 0 when logged in (a claude.ai login or an API key), 1 when not. Only exit 0 passes: a
Claude Code too old to know `auth status` is asked to update rather than trusted blindly. It
accepts any string as an API key, so one real call follows: a one-line prompt, one turn, in an
empty folder; it proves the login or key works (and costs a cent or so).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from autoresearch.agents.base import AgentError, Usage
from autoresearch.agents.cli import CLIAgent, CLIResult, json_events

ALLOWED_TOOLS = "Read,Edit,Write"
STREAM = ("--output-format", "stream-json", "--verbose")
NOT_LOGGED_IN = ("claude is not logged in: run `claude` and /login (or `claude auth login`), or "
                 "export ANTHROPIC_API_KEY")
PROBE_PROMPT = "Reply with the single word OK."


class ClaudeAgent(CLIAgent):
    tool = "claude"
    cost_known = True  # every run reports total_cost_usd

    def argv(self, repo: Path) -> list[str]:
        argv = [self.executable, "-p", *STREAM, "--permission-mode", "acceptEdits",
                "--allowedTools", ALLOWED_TOOLS]
        return argv + self.model_args()

    def model_args(self) -> list[str]:
        return ["--model", self.model] if self.model else []

    def parse(self, stdout: str) -> CLIResult:
        data = result_event(stdout)
        usage = data.get("usage") or {}
        tokens_in = sum(int(usage.get(key) or 0) for key in
                        ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        cost = data.get("total_cost_usd")
        message = str(data.get("result") or "")
        subtype = str(data.get("subtype") or "success")
        errors = "; ".join(str(e) for e in data.get("errors") or [] if e)
        if data.get("is_error"):  # its own words, whatever the subtype says
            error = message or errors or subtype
        elif subtype != "success":
            error = f"{subtype}: {message or errors or 'no message'}"
        else:
            error = None
        return CLIResult(message, Usage(tokens_in, int(usage.get("output_tokens") or 0),
                                        float(cost) if isinstance(cost, (int, float)) else None),
                         error)

    def narrate(self, stdout: str) -> list[str]:
        """The text and tool calls of its assistant messages, in order."""
        lines = []
        for event in json_events(stdout):
            content = (event.get("message") or {}).get("content") \
                if event.get("type") == "assistant" else None
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "text":
                    lines += str(block.get("text") or "").splitlines()
                elif isinstance(block, dict) and block.get("type") == "tool_use":
                    lines.append(f"[{block.get('name')}]")
        return lines + super().narrate(stdout)

    def preflight(self) -> None:
        finished = self.status("auth", "status")
        if finished.returncode != 0:
            try:
                logged_in = json.loads(finished.stdout).get("loggedIn")
            except (ValueError, AttributeError):
                logged_in = None  # not the JSON answer: an old Claude Code, or a crash
            if logged_in is False:
                raise AgentError(NOT_LOGGED_IN)
            raise AgentError(f"cannot check the claude login: `claude auth status` exited "
                             f"{finished.returncode} ({finished.tail() or 'no output'}); update "
                             "Claude Code (`claude update`) and log in with `claude`")
        self.probe()

    def probe(self) -> None:
        """One real call with a one-line prompt: AgentError unless claude answers it."""
        with tempfile.TemporaryDirectory(prefix="autoresearch-probe-") as empty:
            finished = self.status("-p", *STREAM, "--max-turns", "1", *self.model_args(),
                                   stdin=PROBE_PROMPT, cwd=Path(empty))
        try:
            result = self.parse(finished.stdout)
            # out of turns is an answer too: the model was reached, so the key works
            answered = result.error is None or \
                result_event(finished.stdout).get("subtype") == "error_max_turns"
        except ValueError:
            result, answered = None, False
        if answered:
            return
        raise AgentError(f"claude cannot work: a one-line test prompt failed "
                         f"({self.cause(finished, result)}); log in with `claude` (/login) or "
                         "fix ANTHROPIC_API_KEY, then run again")


def result_event(stdout: str) -> dict:
    """The last `result` event of stream-json output; ValueError if there is none."""
    result = next((e for e in reversed(json_events(stdout)) if e.get("type") == "result"), None)
    if result is None:
        raise ValueError("no result event")
    return result

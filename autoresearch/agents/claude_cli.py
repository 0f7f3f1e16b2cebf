"""Claude Code in headless (print) mode, editing train.py in the work tree.

    claude -p <prompt> --output-format json --permission-mode acceptEdits
        --allowedTools Read,Edit,Write [--model M]

acceptEdits lets it edit files without asking; anything else it would need permission for (shell
commands) is denied, as there is nobody to ask. The JSON result object carries `result` (the final
message), `is_error`, `subtype`, `total_cost_usd` and `usage`. A failed run can still say
subtype "success": with is_error true, `result` is the error ("Not logged in · Please run
/login").

Preflight: `claude auth status` prints the login as JSON ({"loggedIn": ..., "authMethod": ...})
and exits 0 when logged in (a claude.ai login or an API key), 1 when not. Only exit 0 passes: a
Claude Code too old to know `auth status` is asked to update rather than trusted blindly.
"""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch.agents.base import AgentError, Usage
from autoresearch.agents.cli import CLIAgent, CLIResult

ALLOWED_TOOLS = "Read,Edit,Write"
NOT_LOGGED_IN = ("claude is not logged in: run `claude` and /login (or `claude auth login`), or "
                 "export ANTHROPIC_API_KEY")


class ClaudeAgent(CLIAgent):
    tool = "claude"
    cost_known = True  # every run reports total_cost_usd

    def argv(self, repo: Path, prompt: str) -> list[str]:
        argv = [self.executable, "-p", prompt, "--output-format", "json",
                "--permission-mode", "acceptEdits", "--allowedTools", ALLOWED_TOOLS]
        return argv + (["--model", self.model] if self.model else [])

    def parse(self, stdout: str) -> CLIResult:
        data = json.loads(stdout.strip() or "null")  # ValueError (JSONDecodeError) if not JSON
        if isinstance(data, list):  # with --verbose the output is every message; take the result
            data = next((m for m in reversed(data) if isinstance(m, dict)
                         and m.get("type") == "result"), None)
        if not isinstance(data, dict):
            raise ValueError("no JSON result object")
        usage = data.get("usage") or {}
        tokens_in = sum(int(usage.get(key) or 0) for key in
                        ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        cost = data.get("total_cost_usd")
        message = str(data.get("result") or "")
        subtype = str(data.get("subtype") or "success")
        if data.get("is_error"):  # its own words, whatever the subtype says
            error = message or subtype
        elif subtype != "success":
            error = f"{subtype}: {message or 'no message'}"
        else:
            error = None
        return CLIResult(message, Usage(tokens_in, int(usage.get("output_tokens") or 0),
                                        float(cost) if isinstance(cost, (int, float)) else None),
                         error)

    def preflight(self) -> None:
        finished = self.status("auth", "status")
        if finished.returncode == 0:
            return
        try:
            logged_in = json.loads(finished.stdout).get("loggedIn")
        except (ValueError, AttributeError):
            logged_in = None  # not the JSON answer: an old Claude Code, or a crash
        if logged_in is False:
            raise AgentError(NOT_LOGGED_IN)
        raise AgentError(f"cannot check the claude login: `claude auth status` exited "
                         f"{finished.returncode} ({finished.tail() or 'no output'}); update Claude "
                         "Code (`claude update`) and log in with `claude`")

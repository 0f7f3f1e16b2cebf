"""Claude Code in headless (print) mode, editing train.py in the work tree.

    claude -p <prompt> --output-format json --permission-mode acceptEdits
        --allowedTools Read,Edit,Write [--model M]

acceptEdits lets it edit files without asking; anything else it would need permission for (shell
commands) is denied, as there is nobody to ask. The JSON result object carries `result` (the final
message), `is_error`, `subtype`, `total_cost_usd` and `usage`.
"""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch.agents.base import Usage
from autoresearch.agents.cli import CLIAgent, CLIResult

ALLOWED_TOOLS = "Read,Edit,Write"


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
        failed = data.get("is_error") or data.get("subtype", "success") != "success"
        error = f"{data.get('subtype', 'error')}: {message or 'no message'}" if failed else None
        return CLIResult(message, Usage(tokens_in, int(usage.get("output_tokens") or 0),
                                        float(cost) if isinstance(cost, (int, float)) else None),
                         error)

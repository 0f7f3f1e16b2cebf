"""Coding-agent CLIs (Claude Code, Codex) as child processes that edit train.py themselves.

The shared part: run the CLI in the work tree with a timeout (killing its whole process group when
it hangs), retry a failed run a couple of times from a clean train.py, and read the one-line
description from the end of its final message. A backend supplies the command line and the parser
of its output format.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from autoresearch.agents.base import AgentError, AgentRefused, AgentRequest, Proposal, Usage
from autoresearch.agents.edits import DESCRIPTION_RE
from autoresearch.agents.prompt import cli_prompt
from autoresearch.ledger.results import sanitize

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a CLI that overran its timeout
DESCRIPTION_LIMIT = 200


@dataclass
class CLIResult:
    message: str  # the agent's final message
    usage: Usage
    error: str | None = None  # set when the output itself reports a failed run


class CLIFailure(Exception):
    def __init__(self, message: str, usage: Usage | None = None):
        super().__init__(message)
        self.usage = usage or Usage()


class CLIAgent:
    """Base of the CLI backends; subclasses set `tool` and implement `argv` and `parse`."""

    tool: str  # the command's name: "claude", "codex"
    cost_known: bool  # whether every run reports (or lets us compute) its dollar cost

    def __init__(self, executable: str, *, model: str | None = None, timeout: float = 900.0,
                 attempts: int = 3, retry_delay: float = 5.0):
        self.executable = executable  # absolute path, resolved by make_agent
        self.model = model
        self.name = f"{self.tool}:{model}" if model else self.tool
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay  # seconds before the 2nd attempt, doubled after

    def argv(self, repo: Path, prompt: str) -> list[str]:
        raise NotImplementedError

    def parse(self, stdout: str) -> CLIResult:
        """Read the CLI's output; raise ValueError when it is not in the expected format."""
        raise NotImplementedError

    def propose(self, request: AgentRequest) -> Proposal:
        prompt = cli_prompt(request)
        train_py = request.repo / "train.py"
        usage, last = Usage(), ""
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:  # a failed run may have left a half-edited file behind
                time.sleep(self.retry_delay * 2 ** (attempt - 2))
                train_py.write_text(request.train_py, encoding="utf-8")
            try:
                result = self._run(request.repo, prompt)
            except CLIFailure as e:
                usage, last = usage + e.usage, str(e)
                continue
            usage = usage + result.usage
            if not train_py.is_file():
                train_py.write_text(request.train_py, encoding="utf-8")
                raise AgentRefused(f"{self.name} deleted train.py (restored)", usage)
            if train_py.read_text(encoding="utf-8") == request.train_py:
                raise AgentRefused(f"{self.name} left train.py unchanged: "
                                   f"{sanitize(result.message, DESCRIPTION_LIMIT)}", usage)
            return Proposal(description_of(result.message), usage)
        train_py.write_text(request.train_py, encoding="utf-8")  # leave no half-done edit
        raise AgentError(f"{self.name} failed {self.attempts} times, last: {last}", usage)

    def _run(self, repo: Path, prompt: str) -> CLIResult:
        # Own session, so a timeout can kill the CLI together with the helpers it spawned;
        # stdin closed, so a CLI that reads piped input does not wait for it forever.
        try:
            process = subprocess.Popen(self.argv(repo, prompt), cwd=repo,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as e:
            raise CLIFailure(f"cannot run {self.executable}: {e}") from e
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            raise CLIFailure(f"no result within {self.timeout:.0f}s (killed)") from None
        except BaseException:  # Ctrl-C: the CLI is in its own session and would not see it
            _kill(process)
            raise
        try:
            result = self.parse(stdout)
        except ValueError as e:
            if process.returncode != 0:
                reason = _tail(stderr or stdout)
                raise CLIFailure(f"exit code {process.returncode}: {reason}") from e
            raise CLIFailure(f"unreadable output ({e}): {_tail(stdout)}") from e
        if process.returncode != 0 or result.error:
            reason = result.error or _tail(stderr) or "no error message"
            raise CLIFailure(f"exit code {process.returncode}: {reason}", result.usage)
        return result


def _kill(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers, and reap the child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.communicate(timeout=KILL_GRACE)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return sanitize(" | ".join(lines[-3:]), DESCRIPTION_LIMIT)


def description_of(message: str) -> str:
    """The last `DESCRIPTION: ...` line of the final message, else its last non-empty line."""
    lines = [line for line in message.splitlines() if line.strip()]
    for line in reversed(lines):
        match = DESCRIPTION_RE.match(line)
        if match and match.group(1).strip():
            return sanitize(match.group(1), DESCRIPTION_LIMIT)
    return sanitize(lines[-1], DESCRIPTION_LIMIT) if lines else "(no description given)"

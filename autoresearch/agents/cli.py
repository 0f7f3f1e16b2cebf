"""Coding-agent CLIs (Claude Code, Codex) as child processes that edit train.py themselves.

The shared part: run the CLI in the work tree under the reaper (execution/procs.py), so that no
helper it starts outlives it; wait for the CLI to exit, not for its output pipes to close (a
helper that keeps stdout open must not stall a proposal: output goes to files); kill the whole
process group at the timeout and say what the agent last printed (a CLI that retries forever
without a network says why only there); retry a failed run a couple of times from a clean
train.py; read the one-line description from the end of its final message. A backend supplies
the command line, the parser of its output format, and its login check (preflight).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from autoresearch.agents.base import AgentError, AgentRefused, AgentRequest, Proposal, Usage
from autoresearch.agents.edits import DESCRIPTION_RE, HYPOTHESIS_RE
from autoresearch.agents.prompt import cli_prompt
from autoresearch.execution.procs import kill_group, reaper_env, supervised
from autoresearch.ledger.results import sanitize

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a CLI that overran its timeout
PREFLIGHT_TIMEOUT = 60.0  # seconds for a login status command (a cold start can take a while)
DESCRIPTION_LIMIT = 200
TAIL_LINES = 3  # of the agent's own output, in a failure message


@dataclass
class CLIResult:
    message: str  # the agent's final message
    usage: Usage
    error: str | None = None  # set when the output itself reports a failed run


@dataclass
class Finished:
    """How a CLI run ended: its exit status (None when killed at the timeout) and its output."""

    returncode: int | None
    stdout: str
    stderr: str

    def tail(self) -> str:
        """Its last few non-empty lines, stderr first, as one line."""
        return _tail(self.stderr) or _tail(self.stdout)


class CLIFailure(Exception):
    def __init__(self, message: str, usage: Usage | None = None):
        super().__init__(message)
        self.usage = usage or Usage()


def run_tool(argv: list[str], *, cwd: Path | None, env: dict[str, str],
             timeout: float) -> Finished:
    """Run `argv` under the reaper until it exits or `timeout` passes; Ctrl-C kills it too.

    Its own session, so that a timeout (or our Ctrl-C, which it would not see) can kill it with
    everything it started; stdin closed, so a CLI that reads piped input does not wait forever.
    """
    with tempfile.TemporaryDirectory(prefix="autoresearch-agent-") as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            process = subprocess.Popen(supervised(argv, grace=KILL_GRACE), cwd=cwd,
                                       env=reaper_env(env), stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=err, start_new_session=True)
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(process.pid, KILL_GRACE)
                process.wait()
                returncode = None
            except BaseException:
                kill_group(process.pid, KILL_GRACE)
                process.wait()
                raise
        return Finished(returncode, _read(out_path), _read(err_path))


class CLIAgent:
    """Base of the CLI backends; subclasses set `tool` and implement argv, parse and preflight."""

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

    def preflight(self) -> None:
        """Raise AgentError, saying what to run, when the CLI is not logged in."""
        raise NotImplementedError

    def status(self, *args: str) -> Finished:
        """Run the CLI's own login status command, `executable *args`."""
        try:
            finished = run_tool([self.executable, *args], cwd=None, env=dict(os.environ),
                                timeout=PREFLIGHT_TIMEOUT)
        except OSError as e:
            raise AgentError(f"cannot run {self.executable}: {e}") from None
        if finished.returncode is None:
            raise AgentError(f"`{self.tool} {' '.join(args)}` gave no answer within "
                             f"{PREFLIGHT_TIMEOUT:.0f}s: {finished.tail() or 'no output'}")
        return finished

    def propose(self, request: AgentRequest) -> Proposal:
        prompt = cli_prompt(request)
        train_py = request.repo / "train.py"
        env = {**os.environ, **request.env}
        usage, last = Usage(), ""
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:  # a failed run may have left a half-edited file behind
                time.sleep(self.retry_delay * 2 ** (attempt - 2))
                train_py.write_text(request.train_py, encoding="utf-8")
            try:
                result = self._run(request.repo, prompt, env)
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
            return Proposal(description_of(result.message), usage,
                            labelled_line(result.message, HYPOTHESIS_RE))
        train_py.write_text(request.train_py, encoding="utf-8")  # leave no half-done edit
        raise AgentError(f"{self.name} failed {self.attempts} times, last: {last}", usage)

    def _run(self, repo: Path, prompt: str, env: dict[str, str]) -> CLIResult:
        try:
            finished = run_tool(self.argv(repo, prompt), cwd=repo, env=env, timeout=self.timeout)
        except OSError as e:
            raise CLIFailure(f"cannot run {self.executable}: {e}") from e
        if finished.returncode is None:
            raise CLIFailure(f"no result within {self.timeout:.0f}s (killed); last output: "
                             f"{finished.tail() or 'none'}")
        try:
            result = self.parse(finished.stdout)
        except ValueError as e:
            if finished.returncode != 0:
                raise CLIFailure(f"exit code {finished.returncode}: {finished.tail()}") from e
            raise CLIFailure(f"unreadable output ({e}): {_tail(finished.stdout)}") from e
        if finished.returncode != 0 or result.error:
            reason = result.error or _tail(finished.stderr) or "no error message"
            raise CLIFailure(f"exit code {finished.returncode}: {reason}", result.usage)
        return result


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return sanitize(" | ".join(lines[-TAIL_LINES:]), DESCRIPTION_LIMIT)


def labelled_line(message: str, pattern: re.Pattern) -> str:
    """The text of the last line of the message that matches `pattern`, or ""."""
    for line in reversed(message.splitlines()):
        match = pattern.match(line)
        if match and match.group(1).strip():
            return sanitize(match.group(1), DESCRIPTION_LIMIT)
    return ""


def description_of(message: str) -> str:
    """The last `DESCRIPTION: ...` line of the final message, else its last non-empty line."""
    if labelled := labelled_line(message, DESCRIPTION_RE):
        return labelled
    lines = [line for line in message.splitlines() if line.strip()]
    return sanitize(lines[-1], DESCRIPTION_LIMIT) if lines else "(no description given)"

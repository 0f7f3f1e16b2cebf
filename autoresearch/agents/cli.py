"""Coding-agent CLIs (Claude Code, Codex) as child processes that edit train.py (a target's
editable files) themselves.

The shared part: run the CLI in the work tree under the reaper (execution/procs.py), so that no
helper it starts outlives it; hand it the prompt on stdin (one argument is capped at 128 KiB on
Linux, and the prompt grows with the journal); wait for the CLI to exit, not for its output pipes
to close (a helper that keeps stdout open must not stall a proposal: output goes to files); kill
the whole process group at the timeout, or as soon as its output says it cannot go on (codex
offline), and say what the agent last printed; retry a failed run a couple of times from clean
editable files, but not a timed-out one (the next would time out too); read the one-line description
from the end of its final message. A backend supplies the command line, the parser of its output
format, and its login check (preflight).

A failure names its cause in this order: the CLI's own JSON error events, then `Error:` lines,
then its last lines; never raw stack frames (`5: <unknown>`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.agents.base import AgentError, AgentRefused, AgentRequest, Proposal, Usage
from autoresearch.agents.edits import DESCRIPTION_RE, HYPOTHESIS_RE
from autoresearch.agents.prompt import cli_prompt
from autoresearch.execution.procs import kill_group, reaper_env, supervised
from autoresearch.redact import sanitize
from autoresearch.target import listed

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a CLI that overran its timeout
PREFLIGHT_TIMEOUT = 60.0  # seconds for a login status command (a cold start can take a while)
POLL = 0.25  # seconds between looks at the output of a running CLI
OVERLAP = 200  # bytes of output seen again at the next look
DESCRIPTION_LIMIT = 200
TAIL_LINES = 3  # of the agent's own output, in a failure message
# Stack frames say nothing to a user: "5: <unknown>", "    at f (file.js:1:2)", Python frames.
FRAME_RE = re.compile(r"^\s*(\d+:\s|at\s|File \"|Traceback \(most recent|\^+\s*$|\.\.\.\s*$)")
ERROR_RE = re.compile(r"\berror\b\s*:", re.IGNORECASE)

GiveUp = Callable[[str], str | None]  # new output -> why to stop waiting now, or None


@dataclass
class CLIResult:
    message: str  # the agent's final message
    usage: Usage
    error: str | None = None  # the failure the output itself reports (its JSON error event)
    complete: bool = True  # False when the output stops before its end (no codex turn.completed)


@dataclass
class Finished:
    """How a CLI run ended: its exit status (None when killed) and its output; `gave_up` says
    why it was killed before the timeout."""

    returncode: int | None
    stdout: str
    stderr: str
    gave_up: str | None = None

    def tail(self) -> str:
        """Its last few non-empty lines that are not stack frames, stderr first, as one line."""
        return _tail(self.stderr) or _tail(self.stdout)

    def error_line(self) -> str:
        """Its last `Error:` line (stderr first), as the CLI wrote it; "" if none."""
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if ERROR_RE.search(line)]
            if lines:
                return sanitize(lines[-1], DESCRIPTION_LIMIT)
        return ""


class CLIFailure(Exception):
    """A failed run; `final` when running it again cannot help (a timeout, no network)."""

    def __init__(self, message: str, usage: Usage | None = None, final: bool = False):
        super().__init__(message)
        self.usage = usage or Usage()
        self.final = final


def json_events(stdout: str) -> list[dict]:
    """The JSON objects of JSONL output, one a line; other lines (warnings) are skipped."""
    events = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def run_tool(argv: list[str], *, cwd: Path | None, env: dict[str, str], timeout: float,
             stdin: str = "", give_up: GiveUp | None = None) -> Finished:
    """Run `argv` under the reaper until it exits or `timeout` passes; Ctrl-C kills it too.

    Its own session, so that a timeout (or our Ctrl-C, which it would not see) can kill it with
    everything it started. `stdin` is its whole input, from a file (empty by default, so a CLI
    that reads piped input does not wait forever). `give_up` sees each new piece of its output
    (stdout and stderr) and may end the run early, saying why. `cwd` is made absolute: a CLI
    resolves its own path arguments against it, and a relative one would be resolved twice.
    """
    cwd = Path(cwd).absolute() if cwd is not None else None
    with tempfile.TemporaryDirectory(prefix="autoresearch-agent-") as tmp:
        out_path, err_path, in_path = (Path(tmp) / name for name in ("stdout", "stderr", "stdin"))
        in_path.write_text(stdin, encoding="utf-8")
        with open(out_path, "wb") as out, open(err_path, "wb") as err, open(in_path, "rb") as inp:
            process = subprocess.Popen(supervised(argv, grace=KILL_GRACE), cwd=cwd,
                                       env=reaper_env(env), stdin=inp, stdout=out,
                                       stderr=err, start_new_session=True)
            try:
                returncode, reason = _wait(process, timeout, give_up, (out_path, err_path))
            except BaseException:
                kill_group(process.pid, KILL_GRACE)
                process.wait()
                raise
        return Finished(returncode, _read(out_path), _read(err_path), reason)


def _wait(process: subprocess.Popen, timeout: float, give_up: GiveUp | None,
          outputs: tuple[Path, ...]) -> tuple[int | None, str | None]:
    """(exit status, None) when it exits in time; (None, why) when killed: the timeout, or
    what `give_up` found in its output."""
    deadline = time.monotonic() + timeout
    offsets = [0] * len(outputs)
    while True:
        try:
            return process.wait(timeout=max(0.0, min(POLL, deadline - time.monotonic()))), None
        except subprocess.TimeoutExpired:
            pass
        reason = None
        if give_up is not None:
            for i, path in enumerate(outputs):
                start = max(0, offsets[i] - OVERLAP)  # a phrase may straddle two looks
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read()
                offsets[i] = start + len(data)
                reason = reason or give_up(data.decode("utf-8", errors="replace"))
        if reason is None and time.monotonic() < deadline:
            continue
        kill_group(process.pid, KILL_GRACE)
        process.wait()
        return None, reason


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

    def argv(self, repo: Path) -> list[str]:
        """The command line of one proposal in work tree `repo` (absolute); the prompt goes on
        stdin."""
        raise NotImplementedError

    def parse(self, stdout: str) -> CLIResult:
        """Read the CLI's output; raise ValueError when it is not in the expected format."""
        raise NotImplementedError

    def narrate(self, stdout: str) -> list[str]:
        """What the agent said in its output, as readable lines: a backend adds the text of its
        JSON events; here, the lines that are not JSON (warnings, plain errors)."""
        return [line for line in stdout.splitlines() if not json_events(line)]

    def give_up(self, output: str) -> str | None:
        """Why the run cannot succeed, seen in a new piece of its output; None to wait on."""
        return None

    def preflight(self) -> None:
        """Raise AgentError, saying what to run, when the CLI is not logged in."""
        raise NotImplementedError

    def status(self, *args: str, stdin: str = "", cwd: Path | None = None) -> Finished:
        """Run one check of the CLI's own, `executable *args` (its login status, a test call);
        AgentError when it cannot run or gives no answer in time."""
        try:
            finished = run_tool([self.executable, *args], cwd=cwd, env=dict(os.environ),
                                timeout=PREFLIGHT_TIMEOUT, stdin=stdin)
        except OSError as e:
            raise AgentError(f"cannot run {self.executable}: {e}") from None
        if finished.returncode is None:
            raise AgentError(f"could not check that {self.tool} works: `{self.tool} "
                             f"{' '.join(args)}` gave no answer within {PREFLIGHT_TIMEOUT:.0f}s "
                             f"(last output: {self.last_output(finished) or 'none'}); check the "
                             "network, then run again")
        return finished

    def last_output(self, finished: Finished) -> str:
        """What it last printed, as one line: stderr, else its narrated output."""
        return _tail(finished.stderr) or _tail("\n".join(self.narrate(finished.stdout)))

    def cause(self, finished: Finished, result: CLIResult | None) -> str:
        """Why a finished run failed: its JSON error event, else an `Error:` line, else its
        last lines that are not stack frames."""
        return ((result.error if result else None) or finished.error_line()
                or self.last_output(finished) or "no error message, and no result")

    def propose(self, request: AgentRequest) -> Proposal:
        prompt = cli_prompt(request)
        repo = request.repo.absolute()
        env = {**os.environ, **request.env}
        usage, last = Usage(), ""
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:  # a failed run may have left a half-edited file behind
                time.sleep(self.retry_delay * 2 ** (attempt - 2))
                restore(request)
            try:
                result = self._run(repo, prompt, env)
            except CLIFailure as e:
                usage, last = usage + e.usage, str(e)
                if e.final:
                    restore(request)
                    raise AgentError(f"{self.name}: {last}", usage) from None
                continue
            usage = usage + result.usage
            gone = [name for name in request.files if not (repo / name).is_file()]
            if gone:
                restore(request)
                raise AgentRefused(f"{self.name} deleted {listed(gone)} (restored)", usage)
            if all((repo / name).read_text(encoding="utf-8") == text
                   for name, text in request.files.items()):
                raise AgentRefused(f"{self.name} left {listed(request.files)} unchanged: "
                                   f"{sanitize(result.message, DESCRIPTION_LIMIT)}", usage)
            return Proposal(description_of(result.message), usage,
                            labelled_line(result.message, HYPOTHESIS_RE))
        restore(request)  # leave no half-done edit
        raise AgentError(f"{self.name} failed {self.attempts} times, last: {last}", usage)

    def _run(self, repo: Path, prompt: str, env: dict[str, str]) -> CLIResult:
        try:
            finished = run_tool(self.argv(repo), cwd=repo, env=env, timeout=self.timeout,
                                stdin=prompt, give_up=self.give_up)
        except OSError as e:
            raise CLIFailure(f"cannot run {self.executable}: {e}") from e
        if finished.gave_up:
            raise CLIFailure(finished.gave_up, final=True)
        if finished.returncode is None:
            raise CLIFailure(f"no result within {self.timeout:.0f}s (killed, not retried); last "
                             f"output: {self.last_output(finished) or 'none'}", final=True)
        try:
            result = self.parse(finished.stdout)
        except ValueError as e:
            if finished.returncode != 0:
                raise CLIFailure(f"exit code {finished.returncode}: "
                                 f"{self.cause(finished, None)}") from e
            raise CLIFailure(f"unreadable output ({e}): {_tail(finished.stdout)}") from e
        if finished.returncode != 0 or result.error or not result.complete:
            raise CLIFailure(f"exit code {finished.returncode}: {self.cause(finished, result)}",
                             result.usage)
        return result


def restore(request: AgentRequest) -> None:
    """Put every editable file of the work tree back as the request gave it."""
    for name, text in request.files.items():
        (request.repo.absolute() / name).write_text(text, encoding="utf-8")


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines()
             if line.strip() and not FRAME_RE.match(line)]
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

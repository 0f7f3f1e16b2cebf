"""What the loop and every agent backend agree on: the request, the proposal, the two failures.

An agent gets an AgentRequest, leaves an edited train.py (a target's editable files) in
request.repo and returns a Proposal. The loop verifies the edit with git and a compile check; it
never trusts the agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autoresearch.errors import UserError
from autoresearch.memory.journal import Entry
from autoresearch.model import Port, Row
from autoresearch.target import DEFAULT, Target


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None  # None when the backend does not report it / price unknown

    def __add__(self, other: Usage) -> Usage:
        # a conversation of several calls costs their sum; unknown only if every part is unknown
        if self.cost_usd is None and other.cost_usd is None:
            cost = None
        else:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens, cost)


@dataclass
class InFlight:
    """An experiment queued or running right now (any worker's): what agents must not repeat."""

    worker: int
    description: str
    changes: list[str]  # short diff summary against the best it was proposed on


@dataclass
class AgentRequest:
    repo: Path  # the work tree; the files to edit are repo / target.editable (train.py by default)
    program: str  # program.md text, re-read by the loop every iteration
    train_py: str  # current train.py text (the best commit's; the crashed one when fixing): the
    # first editable file's, files[target.edited]
    history: list[Row]  # recent results.tsv rows of this tag (kept, discarded, crashed)
    crash_log: str | None = None  # when asking to FIX a crash: the tail of its run.log
    best_val_bpb: float | None = None
    noise_threshold: float | None = None
    experiment: int = 0  # a number unique to this request within the tag (seeds `sweep`)
    worker: int = 0  # which worker asks: each has its own agent session and work tree
    env: dict[str, str] = field(default_factory=dict)  # for every process the agent starts
    journal: list[Entry] = field(default_factory=list)  # every run of the tag so far
    digest: str = ""  # the journal, summarised to a bounded size for a prompt
    inflight: list[InFlight] = field(default_factory=list)  # agent code queued or running now
    port: Port | None = None  # set when asking to re-apply a change onto the current best
    feedback: str = ""  # why the previous proposal was not run (e.g. a duplicate), if it was not
    plateau: int = 0  # experiments in a row without a keep, once that is a plateau (else 0)
    profile: str = ""  # the harness profile the runs use ("cpu", "h100@45s"); "" if unknown
    target: Target = DEFAULT  # the files to edit (target.editable, not train.py) and the metric;
    # best_val_bpb and the history's val_bpb are its loss (target.metric.value shows them)
    files: dict[str, str] = field(default_factory=dict)  # every editable file's current text by
    # path, in the target's order; left empty, {target.edited: train_py}

    def __post_init__(self) -> None:
        self.files = self.files or {self.target.edited: self.train_py}


@dataclass
class Proposal:
    description: str  # one line, what was changed and why
    usage: Usage
    hypothesis: str = ""  # one line, why the agent expects it to help (the journal keeps it)


class Agent(Protocol):
    name: str  # e.g. "sweep", "openai:gpt-5", "claude:sonnet"
    cost_known: bool  # True when the dollar cost of every call will be known (--max-cost needs it)

    def preflight(self) -> None:
        """Check, cheaply and before the loop's first run, that the backend can work (logged in,
        key accepted); raise AgentError with one line saying what to do if not."""
        ...

    def propose(self, request: AgentRequest) -> Proposal: ...


class AgentError(UserError):
    """The backend failed after its retries (network, auth, CLI crash): stop and tell the user.

    `usage` is what the failed attempts still cost, so the loop can count it against --max-cost.
    """

    def __init__(self, message: str, usage: Usage | None = None):
        super().__init__(message)
        self.usage = usage or Usage()


class AgentRefused(Exception):
    """The model answered but produced no usable edit; the loop logs it and asks again later."""

    def __init__(self, message: str, usage: Usage | None = None):
        super().__init__(message)
        self.usage = usage or Usage()

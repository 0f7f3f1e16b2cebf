"""What the loop and every agent backend agree on: the request, the proposal, the two failures.

An agent gets an AgentRequest, leaves an edited train.py in request.repo and returns a Proposal.
The loop verifies the edit with git and a compile check; it never trusts the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from autoresearch.errors import UserError
from autoresearch.ledger.results import Row


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
class AgentRequest:
    repo: Path  # the work tree; train.py lives at repo / "train.py"
    program: str  # program.md text, re-read by the loop every iteration
    train_py: str  # current train.py text (the best commit's; the crashed one when fixing)
    history: list[Row]  # recent results.tsv rows of this tag (kept, discarded, crashed)
    crash_log: str | None = None  # when asking to FIX a crash: the tail of its run.log
    best_val_bpb: float | None = None
    noise_threshold: float | None = None
    experiment: int = 0  # number of the experiment being proposed (seeds `sweep`)


@dataclass
class Proposal:
    description: str  # one line, what was changed and why
    usage: Usage


class Agent(Protocol):
    name: str  # e.g. "sweep", "openai:gpt-5", "claude:sonnet"

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

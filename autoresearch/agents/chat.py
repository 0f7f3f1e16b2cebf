"""The conversation every API agent has: ask, apply the SEARCH/REPLACE answer, and if it cannot be
used, say why once in the same conversation before giving up.

An answer cut off at the output limit (OpenAI finish_reason "length", Anthropic stop_reason
"max_tokens") is never applied, even when its edit blocks look complete: the cut may have fallen
inside a block or before a later one. The one follow-up then says that the answer was cut off at
the output limit and asks for a shorter one; a second cut-off answer refuses the proposal.

A backend only supplies `complete` (one chat call); the protocol around it lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoresearch.agents.base import AgentRefused, AgentRequest, Proposal, Usage
from autoresearch.agents.edits import EditError, apply_to_files, parse_answer
from autoresearch.agents.http import Retry, check_access, post_json
from autoresearch.agents.pricing import Price, dollars, list_price
from autoresearch.agents.prompt import SYSTEM_PROMPT, build_context, for_target, system_prompt
from autoresearch.target import listed

FOLLOW_UP = ("Your answer could not be applied: {reason}. train.py is unchanged. Answer again in "
             "the same format (DESCRIPTION line, then SEARCH/REPLACE blocks whose SEARCH lines are "
             "copied exactly from the current train.py).")
CUT_OFF = "the answer was cut off at the output limit"
CUT_OFF_FOLLOW_UP = ("Your answer was cut off at the output limit before it ended, so none of it "
                     "was applied; train.py is unchanged. Answer again, shorter: only the "
                     "DESCRIPTION line and the SEARCH/REPLACE blocks, no explanation, and SEARCH "
                     "sections of a few lines each.")


@dataclass
class Reply:
    text: str
    usage: Usage
    truncated: bool = False  # the model hit the output limit: the text ends mid-answer


class CutOff(EditError):
    """The answer was truncated at the output limit."""


class ChatAgent:
    """Base of the API backends: one JSON endpoint; subclasses implement `complete`.

    `price` (USD per million input/output tokens, the user's) prices the tokens of every call;
    without it the model's list price does; with neither, `cost_known` is False.
    """

    system = SYSTEM_PROMPT  # the system prompt complete() sends: the request's target's

    def __init__(self, *, name: str, model: str, url: str, headers: dict[str, str],
                 key_env: str | None, timeout: float, retry: Retry | None, price: Price | None):
        self.name, self.model, self.url, self.headers = name, model, url, headers
        self.key_env = key_env  # named in the error when the service rejects the key
        self.timeout = timeout
        self.retry = retry or Retry()
        self.price = price if price is not None else list_price(model)
        self.cost_known = self.price is not None

    def post(self, body: dict, service: str) -> dict:
        return post_json(self.url, body, self.headers, timeout=self.timeout, retry=self.retry,
                         service=service, key_env=self.key_env)

    def check(self, models_url: str, service: str) -> None:
        """Preflight: the service answers and accepts the key (a free models listing)."""
        check_access(models_url, self.headers, service=service, key_env=self.key_env)

    def usage(self, input_tokens: int, output_tokens: int) -> Usage:
        return Usage(input_tokens, output_tokens, dollars(self.price, input_tokens, output_tokens))

    def complete(self, messages: list[dict[str, str]]) -> Reply:
        """Send the conversation (user/assistant turns; the system prompt is the backend's
        business) and return the answer and what the call used."""
        raise NotImplementedError

    def propose(self, request: AgentRequest) -> Proposal:
        self.system = system_prompt(request.target)  # the backend's complete() sends it
        messages = [{"role": "user", "content": build_context(request)}]
        reply = self.complete(messages)
        usage = reply.usage
        try:
            return _apply(request, reply, usage)
        except EditError as e:  # one second chance, told why, in the same conversation
            follow_up = for_target(CUT_OFF_FOLLOW_UP if isinstance(e, CutOff) else FOLLOW_UP,
                                   request.target).format(reason=e)
            messages += [{"role": "assistant", "content": reply.text or "(empty answer)"},
                         {"role": "user", "content": follow_up}]
        reply = self.complete(messages)
        usage = usage + reply.usage
        try:
            return _apply(request, reply, usage)
        except EditError as e:
            raise AgentRefused(f"{self.name} gave an unusable answer twice: {e}", usage) from e


def _apply(request: AgentRequest, reply: Reply, usage: Usage) -> Proposal:
    """Parse the answer, apply it to the editable files (written only if every check passes)."""
    if reply.truncated:
        raise CutOff(CUT_OFF)
    answer = parse_answer(reply.text)
    new = apply_to_files(request.files, answer.edits)
    if new == request.files:
        raise EditError(f"the edits leave {listed(request.files)} unchanged")
    changed = {name: text for name, text in new.items() if text != request.files[name]}
    for name, text in changed.items():
        try:
            if name.endswith(".py"):  # cheaper to ask again than to run a syntax error
                compile(text, name, "exec")
        except SyntaxError as e:
            raise EditError(f"the edited {name} does not compile: {e.msg} (line {e.lineno})") \
                from e
    for name, text in changed.items():
        (request.repo / name).write_text(text, encoding="utf-8")
    return Proposal(answer.description, usage, answer.hypothesis)

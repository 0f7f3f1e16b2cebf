"""The conversation every API agent has: ask, apply the SEARCH/REPLACE answer, and if it cannot be
used, say why once in the same conversation before giving up.

A backend only supplies `complete` (one chat call); the protocol around it lives here.
"""

from __future__ import annotations

from autoresearch.agents.base import AgentRefused, AgentRequest, Proposal, Usage
from autoresearch.agents.edits import EditError, apply_edits, parse_answer
from autoresearch.agents.http import Retry, post_json
from autoresearch.agents.pricing import Price, dollars, list_price
from autoresearch.agents.prompt import build_context

FOLLOW_UP = ("Your answer could not be applied: {reason}. train.py is unchanged. Answer again in "
             "the same format (DESCRIPTION line, then SEARCH/REPLACE blocks whose SEARCH lines are "
             "copied exactly from the current train.py).")


class ChatAgent:
    """Base of the API backends: one JSON endpoint; subclasses implement `complete`.

    `price` (USD per million input/output tokens, the user's) prices the tokens of every call;
    without it the model's list price does; with neither, `cost_known` is False.
    """

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

    def usage(self, input_tokens: int, output_tokens: int) -> Usage:
        return Usage(input_tokens, output_tokens, dollars(self.price, input_tokens, output_tokens))

    def complete(self, messages: list[dict[str, str]]) -> tuple[str, Usage]:
        """Send the conversation (user/assistant turns; the system prompt is the backend's
        business) and return the answer text and what the call used."""
        raise NotImplementedError

    def propose(self, request: AgentRequest) -> Proposal:
        messages = [{"role": "user", "content": build_context(request)}]
        text, usage = self.complete(messages)
        try:
            return _apply(request, text, usage)
        except EditError as e:  # one second chance, told why, in the same conversation
            messages += [{"role": "assistant", "content": text or "(empty answer)"},
                         {"role": "user", "content": FOLLOW_UP.format(reason=e)}]
        text, used = self.complete(messages)
        usage = usage + used
        try:
            return _apply(request, text, usage)
        except EditError as e:
            raise AgentRefused(f"{self.name} gave an unusable answer twice: {e}", usage) from e


def _apply(request: AgentRequest, text: str, usage: Usage) -> Proposal:
    """Parse the answer, apply it to train.py (written only if every check passes)."""
    answer = parse_answer(text)
    new_text = apply_edits(request.train_py, answer.edits)
    if new_text == request.train_py:
        raise EditError("the edits leave train.py unchanged")
    try:
        compile(new_text, "train.py", "exec")  # cheaper to ask again than to run a syntax error
    except SyntaxError as e:
        raise EditError(f"the edited train.py does not compile: {e.msg} (line {e.lineno})") from e
    (request.repo / "train.py").write_text(new_text, encoding="utf-8")
    return Proposal(answer.description, usage)

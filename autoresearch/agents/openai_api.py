"""Any OpenAI-compatible chat-completions endpoint: OpenAI, OpenRouter, vLLM, ollama, llama.cpp.

POST {base_url}/chat/completions with `Authorization: Bearer <key>`; the answer is
choices[0].message.content, cut off when choices[0].finish_reason is "length", and the usage
usage.prompt_tokens / completion_tokens. Dollars: usage.cost where the server reports them (as
OpenRouter does), else the tokens at the given or the list price. Preflight: GET {base_url}/models.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

from autoresearch.agents.base import AgentError
from autoresearch.agents.chat import ChatAgent, Reply
from autoresearch.agents.http import Retry
from autoresearch.agents.pricing import Price

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-5"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


def is_local(base_url: str) -> bool:
    """True for servers on this machine or the LAN (vLLM, ollama, llama.cpp): they need no key."""
    host = urlparse(base_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


class OpenAIAgent(ChatAgent):
    def __init__(self, *, model: str = DEFAULT_MODEL, base_url: str = DEFAULT_BASE_URL,
                 api_key: str | None = None, key_env: str | None = DEFAULT_KEY_ENV,
                 timeout: float = 600.0, retry: Retry | None = None, price: Price | None = None):
        self.base_url = base_url.rstrip("/")
        super().__init__(name=f"openai:{model}", model=model,
                         url=self.base_url + "/chat/completions",
                         headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
                         key_env=key_env if api_key else None, timeout=timeout, retry=retry,
                         price=price)

    def preflight(self) -> None:
        self.check(self.base_url + "/models", service=f"chat API at {self.base_url}")

    def complete(self, messages: list[dict[str, str]]) -> Reply:
        body = {"model": self.model,
                "messages": [{"role": "system", "content": self.system}, *messages]}
        reply = self.post(body, service=f"chat API at {self.url}")
        try:
            choice = reply["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise AgentError(f"{self.url} answered without choices[0].message: is it an "
                             "OpenAI-compatible /chat/completions endpoint?") from e
        used = reply.get("usage") or {}
        usage = self.usage(int(used.get("prompt_tokens") or 0),
                           int(used.get("completion_tokens") or 0))
        if isinstance(used.get("cost"), (int, float)):
            usage.cost_usd = float(used["cost"])  # the server knows best (OpenRouter)
        return Reply(text, usage, truncated=choice.get("finish_reason") == "length")

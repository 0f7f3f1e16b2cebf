"""The Anthropic Messages API.

POST {base_url}/v1/messages with headers x-api-key, anthropic-version and a JSON body of model,
max_tokens, system, messages; the answer is the text blocks of `content`, cut off when
stop_reason is "max_tokens"; the usage usage.input_tokens / output_tokens, priced at the given or
the list price. 429, 529 and 5xx are retried. Preflight: GET {base_url}/v1/models.
The base URL may be given with or without its /v1 (https://api.anthropic.com/v1 works too), as
OpenAI-compatible servers are, so a proxy's address can be pasted either way.
"""

from __future__ import annotations

from autoresearch.agents.base import AgentError
from autoresearch.agents.chat import ChatAgent, Reply
from autoresearch.agents.http import Retry
from autoresearch.agents.pricing import Price

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-sonnet-4-5"
DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
API_VERSION = "2023-06-01"
MAX_TOKENS = 8192  # a description and a few edit blocks; also the cap of the smallest models


class AnthropicAgent(ChatAgent):
    def __init__(self, *, api_key: str, model: str = DEFAULT_MODEL,
                 base_url: str = DEFAULT_BASE_URL, key_env: str = DEFAULT_KEY_ENV,
                 timeout: float = 600.0, retry: Retry | None = None, price: Price | None = None):
        headers = {"x-api-key": api_key, "anthropic-version": API_VERSION,
                   "content-type": "application/json"}
        self.base_url = api_root(base_url)
        super().__init__(name=f"anthropic:{model}", model=model,
                         url=self.base_url + "/v1/messages", headers=headers,
                         key_env=key_env, timeout=timeout, retry=retry, price=price)

    def preflight(self) -> None:
        self.check(self.base_url + "/v1/models", service="Anthropic API")

    def complete(self, messages: list[dict[str, str]]) -> Reply:
        body = {"model": self.model, "max_tokens": MAX_TOKENS, "system": self.system,
                "messages": messages}
        reply = self.post(body, service="Anthropic API")
        content = reply.get("content")
        if not isinstance(content, list):
            raise AgentError(f"{self.url} answered without a content list: is it the Anthropic "
                             "Messages API?")
        text = "".join(block.get("text", "") for block in content
                       if isinstance(block, dict) and block.get("type") == "text")
        used = reply.get("usage") or {}
        usage = self.usage(int(used.get("input_tokens") or 0), int(used.get("output_tokens") or 0))
        return Reply(text, usage, truncated=reply.get("stop_reason") == "max_tokens")


def api_root(base_url: str) -> str:
    """The base URL without a trailing / or /v1: the paths added to it carry the /v1."""
    return base_url.rstrip("/").removesuffix("/v1")

"""One JSON POST with retries: what both API backends need to survive a night of flaky networks.

Overload, rate limits, every 5xx (Cloudflare's 520-524 and Anthropic's 529 included) and dropped
connections are retried with exponential back-off, or after the wait the server asked for
(retry_after.py); a bad key, a wrong model name or a malformed request is not, because waiting
does not fix it: those become one AgentError line that says what to check. check_access() asks
the same service once, for free, whether it accepts the key, before the loop spends a night on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from autoresearch.agents.base import AgentError
from autoresearch.retry_after import retry_after_seconds

RETRY_STATUSES = {408, 409, 429}  # and every status >= 500: see retryable()
# 429s that no amount of waiting fixes: the account is out of money.
FATAL_ERROR_CODES = {"insufficient_quota", "billing_hard_limit_reached",
                     "enforced_spend_limit_reached"}
CONNECT_TIMEOUT = 10.0  # seconds; the read timeout is the agent's --timeout
CHECK_TIMEOUT = 30.0  # seconds for check_access's one GET


@dataclass
class Retry:
    attempts: int = 5
    base_delay: float = 2.0  # seconds before the 2nd attempt, doubled each time
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(self.max_delay, max(0.0, retry_after))
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


def post_json(url: str, body: dict, headers: dict[str, str], *, timeout: float, retry: Retry,
              service: str, key_env: str | None = None) -> dict:
    """POST `body` as JSON and return the decoded JSON reply, retrying what can be retried.

    `service` names the endpoint in messages ("Anthropic API"); `key_env` names the env var that
    held the key, so a 401 can say which one to fix.
    """
    last = ""
    for attempt in range(1, retry.attempts + 1):
        retry_after = None
        try:
            response = requests.post(url, json=body, headers=headers,
                                     timeout=(CONNECT_TIMEOUT, timeout))
        except requests.Timeout:
            last = f"no answer within {timeout:.0f}s"
        except requests.ConnectionError as e:
            last = f"cannot connect to {url} ({type(e).__name__})"
        else:
            payload = _decode(response)
            message, code = _error_of(payload)
            if response.status_code == 200 and isinstance(payload, dict) and message is None:
                return payload
            if response.status_code == 200:  # some proxies report upstream failures in a 200
                last = f"error in reply: {message or str(payload)[:200]}"
            elif retryable(response.status_code) and code not in FATAL_ERROR_CODES:
                last = f"HTTP {response.status_code}: {message}"
                retry_after = retry_after_seconds(response)
            else:
                raise AgentError(_explain(response.status_code, message, service, key_env, url))
        if attempt < retry.attempts:
            time.sleep(retry.delay(attempt, retry_after))
    raise AgentError(f"{service} failed {retry.attempts} times, last: {last}; check the service "
                     "status or your network, then resume the loop")


def retryable(status: int) -> bool:
    """A status that waiting can fix: timeouts, conflicts, rate limits and any server error."""
    return status in RETRY_STATUSES or status >= 500


def check_access(url: str, headers: dict[str, str], *, service: str,
                 key_env: str | None = None) -> None:
    """GET `url` (a models listing: free) once; AgentError if nothing answers or the key is refused.

    Any other answer passes: a proxy without a models listing may still serve completions.
    """
    try:
        response = requests.get(url, headers=headers, timeout=(CONNECT_TIMEOUT, CHECK_TIMEOUT))
    except requests.ConnectionError as e:
        raise AgentError(f"cannot connect to {url} ({type(e).__name__}): is the server up? "
                         "check --base-url and your network") from None
    except requests.Timeout:
        return  # slow is not refused; the first real call will tell
    if response.status_code in (401, 403):
        message, _ = _error_of(_decode(response))
        raise AgentError(_explain(response.status_code, message, service, key_env, url))


def _decode(response: requests.Response) -> dict | str:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_of(payload: dict | str) -> tuple[str | None, str | None]:
    """(message, code) of an error reply in the OpenAI, Anthropic or llama.cpp/ollama shape.

    OpenAI: {"error": {"message", "type", "code"}}; Anthropic: {"type": "error", "error":
    {"type", "message"}}; ollama: {"error": "text"}. (None, None) when it is not an error.
    """
    if not isinstance(payload, dict):
        return " ".join(str(payload).split())[:200] or "empty reply", None
    error = payload.get("error")
    if error is None:
        return None, None
    if isinstance(error, dict):
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
        code = error.get("code") or details.get("error_code") or error.get("type")
        return str(error.get("message") or error), str(code) if code else None
    return str(error), None


def _explain(status: int, message: str | None, service: str, key_env: str | None,
             url: str) -> str:
    """One actionable line for an error that retrying will not fix."""
    detail = f": {message}" if message else ""
    if status == 401:
        return (f"{key_env} rejected ({status}){detail}: check the key" if key_env
                else f"{service} wants an API key ({status}){detail}: pass --api-key-env")
    if status == 403:
        return f"{service} refused access ({status}){detail}: check the key's permissions"
    if status == 404:
        return (f"{service} has no {url} or no such model ({status}){detail}: "
                "check --model and --base-url")
    if status == 429:
        return f"{service} quota exhausted ({status}){detail}: add credit or raise the limit"
    return f"{service} rejected the request ({status}){detail}"

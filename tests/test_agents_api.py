"""API backends against a real HTTP server on 127.0.0.1 that speaks the providers' protocols.

The server checks what the real services check (path, auth header, JSON body) and answers from a
script: overloads, server errors, malformed answers, edits that do not match, a rejected key.
"""

import email.utils
import io
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from rich.console import Console

from autoresearch.agents import AgentError, AgentRefused, AgentRequest, make_agent
from autoresearch.agents.anthropic_api import AnthropicAgent
from autoresearch.agents.http import Retry
from autoresearch.agents.openai_api import OpenAIAgent
from autoresearch.agents.pricing import PRICE_SOURCES, PRICES_READ, list_price
from autoresearch.agents.prompt import results_table
from autoresearch.errors import UserError
from autoresearch.ledger.results import format_row
from autoresearch.ledger.state import log_event
from autoresearch.model import Row
from autoresearch.redact import redact
from autoresearch.retry_after import retry_after_seconds
from autoresearch.review.console import PlainConsole

TRAIN_PY = (Path(__file__).parent.parent / "train.py").read_text()  # the real one
[OLD_LINE] = [line for line in TRAIN_PY.splitlines() if line.startswith("MATRIX_LR = ")]
NEW_LINE = "MATRIX_LR = 0.05  # raised by the agent"
PROGRAM = "# autoresearch program\nTry ideas that lower val_bpb. Zebra-marker-1729."
FAST = Retry(attempts=3, base_delay=0.01, max_delay=0.05)


def answer(search: str, replace: str, description: str = "raise MATRIX_LR 0.04 -> 0.05") -> str:
    return (f"I think the matrix LR is too low.\nDESCRIPTION: {description}\n"
            f"```\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n")


GOOD = answer(OLD_LINE, NEW_LINE)  # quotes the real line, comment and all
WRONG_SEARCH = answer("MATRIX_LR = 0.4", "MATRIX_LR = 0.05", "raise MATRIX_LR")  # not in train.py
EXPECTED = TRAIN_PY.replace(f"\n{OLD_LINE}\n", f"\n{NEW_LINE}\n")

class Script:
    """Replies to send, in order, and the requests received (path, headers, JSON body)."""

    def __init__(self):
        self.replies: list[tuple[int, object, dict, float]] = []
        self.requests: list[tuple[str, dict, dict]] = []
        self.expect_path = ""
        self.expect_headers: dict[str, str] = {}
        self.listing: tuple[int, object] = (200, {"object": "list", "data": []})  # GET's answer
        self.gets: list[tuple[str, dict]] = []

    def reply(self, status: int, body: object, headers: dict | None = None, delay: float = 0.0):
        self.replies.append((status, body, headers or {}, delay))


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            headers = {k.lower(): v for k, v in self.headers.items()}
            script.requests.append((self.path, headers, body))
            wrong = [k for k, v in script.expect_headers.items() if headers.get(k) != v]
            if self.path != script.expect_path:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
            elif wrong or "application/json" not in headers.get("content-type", ""):
                self._send(401, {"error": {"message": f"bad headers {wrong}"}})
            elif not script.replies:
                self._send(500, {"error": {"message": "test script exhausted"}})
            else:
                status, reply, extra, delay = script.replies.pop(0)
                time.sleep(delay)
                self._send(status, reply, extra)

        def do_GET(self):  # the models listing that preflight asks for
            script.gets.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            self._send(*script.listing)

        def _send(self, status, reply, extra=None):
            data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    script.port = httpd.server_address[1]
    yield script
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def make_request(repo: Path, crash_log: str | None = None) -> AgentRequest:
    (repo / "train.py").write_text(TRAIN_PY)
    history = [Row(commit="a1b2c3d4", val_bpb=0.998, memory_gb=44.1, status="keep",
                   description="baseline", experiment=1, kind="baseline"),
               Row(commit="e5f6a7b8", val_bpb=0.0, memory_gb=0.0, status="crash",
                   description="swap relu^2 for gelu", experiment=2, reason="oom")]
    return AgentRequest(repo=repo, program=PROGRAM, train_py=TRAIN_PY, history=history,
                        crash_log=crash_log, best_val_bpb=0.998, noise_threshold=0.002,
                        experiment=3)


# --- OpenAI-compatible ------------------------------------------------------------------------

def openai_agent(server, **kwargs) -> OpenAIAgent:
    server.expect_path = "/v1/chat/completions"
    server.expect_headers = {"authorization": "Bearer sk-test-123"}
    kwargs = {"model": "gpt-5", "api_key": "sk-test-123", "timeout": 5.0, "retry": FAST} | kwargs
    return OpenAIAgent(base_url=f"http://127.0.0.1:{server.port}/v1", **kwargs)


def chat_reply(text: str, prompt_tokens: int = 1000, completion_tokens: int = 200, **usage):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-5",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens, **usage}}


def test_openai_proposes_and_applies(server, tmp_path):
    server.reply(200, chat_reply(GOOD))
    proposal = openai_agent(server).propose(make_request(tmp_path))
    assert EXPECTED != TRAIN_PY and EXPECTED.count(NEW_LINE) == 1
    assert (tmp_path / "train.py").read_text() == EXPECTED
    assert proposal.description == "raise MATRIX_LR 0.04 -> 0.05"
    assert (proposal.usage.input_tokens, proposal.usage.output_tokens) == (1000, 200)
    assert proposal.usage.cost_usd == pytest.approx((1000 * 1.25 + 200 * 10.0) / 1e6)
    [(_, _, body)] = server.requests
    assert body["model"] == "gpt-5"
    system, user = body["messages"]
    assert system["role"] == "system" and "<<<<<<< SEARCH" in system["content"]
    assert user["role"] == "user"
    assert "Zebra-marker-1729" in user["content"]  # program.md
    assert TRAIN_PY.rstrip("\n") in user["content"]  # train.py, verbatim
    assert "swap relu^2 for gelu [oom]" in user["content"]  # the results table
    assert "0.998000" in user["content"] and "0.002000" in user["content"]


def test_openai_retries_429_and_500(server, tmp_path):
    server.reply(429, {"error": {"message": "Rate limit reached", "type": "requests",
                                 "code": "rate_limit_exceeded"}}, {"Retry-After": "0"})
    server.reply(500, {"error": {"message": "The server had an error", "type": "server_error"}})
    server.reply(200, chat_reply(GOOD))
    proposal = openai_agent(server).propose(make_request(tmp_path))
    assert len(server.requests) == 3
    assert proposal.description.startswith("raise MATRIX_LR")
    assert (tmp_path / "train.py").read_text() == EXPECTED


def test_openai_retries_a_read_timeout(server, tmp_path):
    server.reply(200, chat_reply(GOOD), delay=1.5)
    server.reply(200, chat_reply(GOOD))
    openai_agent(server, timeout=0.5).propose(make_request(tmp_path))
    assert len(server.requests) == 2
    assert (tmp_path / "train.py").read_text() == EXPECTED


def test_malformed_answer_gets_one_follow_up(server, tmp_path):
    server.reply(200, chat_reply("I would make the model deeper."))
    server.reply(200, chat_reply(GOOD))
    proposal = openai_agent(server).propose(make_request(tmp_path))
    assert proposal.usage.input_tokens == 2000  # both calls counted
    _, _, second = server.requests[1]
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == "I would make the model deeper."
    assert "DESCRIPTION" in second["messages"][3]["content"]
    assert (tmp_path / "train.py").read_text() == EXPECTED


def test_unmatched_search_is_sent_back_with_the_reason(server, tmp_path):
    server.reply(200, chat_reply(WRONG_SEARCH))
    server.reply(200, chat_reply(GOOD))
    openai_agent(server).propose(make_request(tmp_path))
    follow_up = server.requests[1][2]["messages"][-1]["content"]
    assert "block 1: SEARCH text not found in train.py" in follow_up
    assert (tmp_path / "train.py").read_text() == EXPECTED


def test_two_unusable_answers_are_refused(server, tmp_path):
    server.reply(200, chat_reply(WRONG_SEARCH, cost=0.01))
    server.reply(200, chat_reply(WRONG_SEARCH.replace("= 0.4\n", "= 0.004\n"), cost=0.02))
    with pytest.raises(AgentRefused, match="not found") as refused:
        openai_agent(server).propose(make_request(tmp_path))
    assert len(server.requests) == 2
    assert refused.value.usage.cost_usd == pytest.approx(0.03)  # server-reported cost wins
    assert (tmp_path / "train.py").read_text() == TRAIN_PY


def test_syntax_error_is_sent_back(server, tmp_path):
    server.reply(200, chat_reply(answer(OLD_LINE, "MATRIX_LR = (0.05")))
    server.reply(200, chat_reply(GOOD))
    openai_agent(server).propose(make_request(tmp_path))
    assert "does not compile" in server.requests[1][2]["messages"][-1]["content"]
    assert (tmp_path / "train.py").read_text() == EXPECTED


def test_401_is_not_retried(server, tmp_path):
    server.reply(401, {"error": {"message": "Incorrect API key provided: sk-test***",
                                 "type": "invalid_request_error", "code": "invalid_api_key"}})
    with pytest.raises(AgentError, match=r"OPENAI_API_KEY rejected \(401\).*check the key"):
        openai_agent(server, key_env="OPENAI_API_KEY").propose(make_request(tmp_path))
    assert len(server.requests) == 1
    assert (tmp_path / "train.py").read_text() == TRAIN_PY


def test_quota_429_is_not_retried_but_503_is_until_exhausted(server, tmp_path):
    server.reply(429, {"error": {"message": "You exceeded your current quota",
                                 "type": "insufficient_quota", "code": "insufficient_quota"}})
    with pytest.raises(AgentError, match="quota"):
        openai_agent(server).propose(make_request(tmp_path))
    assert len(server.requests) == 1
    for _ in range(3):
        server.reply(503, "<html>Service Unavailable</html>")
    with pytest.raises(AgentError, match="failed 3 times, last: HTTP 503"):
        openai_agent(server).propose(make_request(tmp_path))
    assert len(server.requests) == 4


def test_connection_refused_is_retried_then_reported(tmp_path):
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = OpenAIAgent(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", retry=FAST)
    with pytest.raises(AgentError, match="failed 3 times, last: cannot connect"):
        agent.propose(make_request(tmp_path))


def test_local_server_needs_no_key(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.expect_path = "/v1/chat/completions"
    server.reply(200, chat_reply(GOOD))
    agent = make_agent("openai", model="qwen3-coder",
                       base_url=f"http://127.0.0.1:{server.port}/v1", timeout=5.0)
    assert agent.name == "openai:qwen3-coder"
    proposal = agent.propose(make_request(tmp_path))
    assert proposal.usage.cost_usd is None  # not reported, not in the price table
    [(_, headers, body)] = server.requests
    assert "authorization" not in headers
    assert body["model"] == "qwen3-coder"


def test_make_agent_wants_a_key_for_remote_servers(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_ROUTER_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        make_agent("openai")
    with pytest.raises(UserError, match="MY_ROUTER_KEY is not set"):
        make_agent("openai", base_url="https://openrouter.ai/api/v1", api_key_env="MY_ROUTER_KEY")
    monkeypatch.setenv("MY_ROUTER_KEY", "sk-or-1")
    agent = make_agent("openai", model="anthropic/claude-sonnet-4.5",
                       base_url="https://openrouter.ai/api/v1", api_key_env="MY_ROUTER_KEY")
    assert agent.headers == {"Authorization": "Bearer sk-or-1"}
    with pytest.raises(UserError, match="unknown agent"):
        make_agent("gemini")


# --- Anthropic --------------------------------------------------------------------------------

def anthropic_agent(server, **kwargs) -> AnthropicAgent:
    server.expect_path = "/v1/messages"
    server.expect_headers = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    kwargs = {"api_key": "sk-ant-test", "timeout": 5.0, "retry": FAST,
              "base_url": f"http://127.0.0.1:{server.port}"} | kwargs
    return AnthropicAgent(**kwargs)


def message_reply(text: str, input_tokens: int = 2000, output_tokens: int = 300) -> dict:
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def anthropic_error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


def test_anthropic_proposes_and_applies(server, tmp_path):
    server.reply(200, message_reply(GOOD))
    proposal = anthropic_agent(server).propose(make_request(tmp_path))
    assert (tmp_path / "train.py").read_text() == EXPECTED
    assert proposal.description == "raise MATRIX_LR 0.04 -> 0.05"
    assert proposal.usage.cost_usd == pytest.approx((2000 * 3.0 + 300 * 15.0) / 1e6)
    [(_, _, body)] = server.requests
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] > 0
    assert "<<<<<<< SEARCH" in body["system"]
    [user] = body["messages"]
    assert user["role"] == "user" and "Zebra-marker-1729" in user["content"]
    assert TRAIN_PY.rstrip("\n") in user["content"]


def test_anthropic_crash_fix_prompt(server, tmp_path):
    server.reply(200, message_reply(GOOD))
    anthropic_agent(server).propose(make_request(tmp_path, crash_log="torch.OutOfMemoryError: "
                                                                     "CUDA out of memory"))
    content = server.requests[0][2]["messages"][0]["content"]
    assert "CUDA out of memory" in content and "Fix train.py" in content


def test_anthropic_retries_overload_then_follows_up(server, tmp_path):
    server.reply(529, anthropic_error("overloaded_error", "Overloaded"))
    server.reply(500, anthropic_error("api_error", "Internal server error"))
    server.reply(200, message_reply(WRONG_SEARCH))
    server.reply(200, message_reply(GOOD))
    proposal = anthropic_agent(server).propose(make_request(tmp_path))
    assert len(server.requests) == 4
    last = server.requests[-1][2]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user"]
    assert "block 1: SEARCH text not found" in last[-1]["content"]
    assert proposal.usage.input_tokens == 4000
    assert (tmp_path / "train.py").read_text() == EXPECTED


def test_anthropic_401_names_the_key(server, tmp_path):
    server.reply(401, anthropic_error("authentication_error", "invalid x-api-key"))
    with pytest.raises(AgentError, match=r"ANTHROPIC_API_KEY rejected \(401\): invalid x-api-key"):
        anthropic_agent(server).propose(make_request(tmp_path))
    assert len(server.requests) == 1


def test_anthropic_404_and_make_agent(server, tmp_path, monkeypatch):
    server.reply(404, anthropic_error("not_found_error", "model: claude-nope"))
    with pytest.raises(AgentError, match=r"404.*claude-nope.*check --model"):
        anthropic_agent(server, model="claude-nope").propose(make_request(tmp_path))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(UserError, match="ANTHROPIC_API_KEY is not set"):
        make_agent("anthropic")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    server.reply(200, message_reply(GOOD))
    agent = make_agent("anthropic", model="claude-haiku-4-5",
                       base_url=f"http://127.0.0.1:{server.port}", timeout=5.0)
    assert agent.name == "anthropic:claude-haiku-4-5"
    assert agent.propose(make_request(tmp_path)).usage.cost_usd == pytest.approx(
        (2000 * 1.0 + 300 * 5.0) / 1e6)


def test_results_table_shows_the_recent_window_most_recent_last():
    rows = [Row(commit=f"c{n:06d}", val_bpb=1 - n / 1000, memory_gb=40.0, status="discard",
                description=f"idea {n}", experiment=n) for n in range(1, 41)]
    table = results_table(rows, limit=30).splitlines()
    assert table[0] == "(10 earlier runs not shown)"
    assert "idea 11" in table[2] and "idea 40" in table[-1] and "0.960000" in table[-1]
    assert not any("idea 10 " in line or line.endswith("idea 10") for line in table)


def test_the_loop_and_its_api_agents_do_not_load_the_download_code():
    # pyarrow and rich's progress bars cost ~0.4 s to import; only prepare.py needs them
    code = ("import sys, autoresearch.scheduler, autoresearch.agents.openai_api, "
            "autoresearch.agents.anthropic_api; "
            "print(sorted(m for m in ('pyarrow', 'autoresearch.download') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- secrets ----------------------------------------------------------------------------------

KEY = "zq-Pelican-93-lantern-Quartz-7781"  # no known key shape: only the registry can catch it


def leaks(text: str, key: str = KEY) -> list[str]:
    """The runs of 8 key characters that `text` shows."""
    return [key[i:i + 8] for i in range(len(key) - 7) if key[i:i + 8] in text]


def sink_outputs(tmp_path, message: str) -> list[str]:
    """What each sink of the loop makes of `message`: console, events.log, a results.tsv cell."""
    out = io.StringIO()
    PlainConsole(Console(file=out, width=400)).event(message)
    log_event(tmp_path, "t", message)
    cell = format_row(Row(commit="a1b2c3d", val_bpb=0.0, memory_gb=0.0, status="crash",
                          description="agent failed", reason=message))
    return [redact(message), out.getvalue(),
            (tmp_path / ".autoresearch" / "t" / "events.log").read_text(), cell]


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
@pytest.mark.parametrize("status, echo", [
    (401, "Incorrect API key provided: {key}. You can find your API key at https://example"),
    (400, "bad request headers: Authorization: Bearer {key}, x-api-key: {key}"),
    (401, "Incorrect API key provided: zq-Pel*************-Quartz-7781"),  # masked, not enough
])
def test_a_key_echoed_by_the_server_reaches_no_output(server, tmp_path, monkeypatch, backend,
                                                      status, echo):
    monkeypatch.setenv("ROUTER_KEY", KEY)
    if backend == "openai":
        base, server.expect_path = f"http://127.0.0.1:{server.port}/v1", "/v1/chat/completions"
    else:
        base, server.expect_path = f"http://127.0.0.1:{server.port}", "/v1/messages"
    agent = make_agent(backend, model="m", base_url=base, api_key_env="ROUTER_KEY", timeout=5.0)
    server.reply(status, {"error": {"message": echo.format(key=KEY), "type": "auth_error"}})
    with pytest.raises(AgentError) as err:
        agent.propose(make_request(tmp_path))
    message = str(err.value)
    assert leaks(message)  # the server did echo it: the sinks below have something to hide
    for output in sink_outputs(tmp_path, message):
        assert "[redacted]" in output and not leaks(output), output


# --- truncated answers ------------------------------------------------------------------------

def test_an_answer_cut_off_at_the_output_limit_is_not_applied(server, tmp_path):
    cut = chat_reply(GOOD, completion_tokens=4096)
    cut["choices"][0]["finish_reason"] = "length"  # the edit block looks whole, the answer is not
    server.reply(200, cut)
    other = "MATRIX_LR = 0.045  # a shorter answer"
    server.reply(200, chat_reply(answer(OLD_LINE, other)))
    proposal = openai_agent(server).propose(make_request(tmp_path))
    assert (tmp_path / "train.py").read_text() == TRAIN_PY.replace(OLD_LINE, other)
    assert proposal.usage.output_tokens == 4096 + 200  # the cut-off answer still cost money
    follow_up = server.requests[1][2]["messages"][-1]["content"]
    assert "cut off at the output limit" in follow_up and "shorter" in follow_up


def test_two_answers_cut_off_are_refused(server, tmp_path):
    for _ in range(2):
        cut = message_reply(GOOD, output_tokens=8192)
        cut["stop_reason"] = "max_tokens"
        server.reply(200, cut)
    with pytest.raises(AgentRefused, match="cut off at the output limit") as refused:
        anthropic_agent(server).propose(make_request(tmp_path))
    assert len(server.requests) == 2
    assert refused.value.usage.output_tokens == 2 * 8192
    assert (tmp_path / "train.py").read_text() == TRAIN_PY


# --- retries ----------------------------------------------------------------------------------

def test_every_5xx_is_retried_after_the_wait_the_server_asked_for(server, tmp_path):
    for status in (520, 522, 524, 501):  # Cloudflare's origin errors, and any other 5xx
        server.reply(status, "<html>origin error</html>", {"retry-after-ms": "20"})
    server.reply(200, chat_reply(GOOD))
    # Our own back-off would sleep 100 s per retry: finishing at all proves retry-after-ms won.
    agent = openai_agent(server, retry=Retry(attempts=5, base_delay=100, max_delay=100))
    done = []
    worker = threading.Thread(target=lambda: done.append(agent.propose(make_request(tmp_path))),
                              daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert done and len(server.requests) == 5
    assert (tmp_path / "train.py").read_text() == EXPECTED


def answered(server, headers: dict) -> requests.Response:
    """A real response of the test server carrying `headers`."""
    server.expect_path = "/"
    server.reply(429, {"error": {"message": "slow down"}}, headers)
    return requests.post(f"http://127.0.0.1:{server.port}/", json={}, timeout=5)


def test_retry_after_in_all_three_forms(server):
    assert retry_after_seconds(answered(server, {"retry-after-ms": "1500"})) == 1.5
    assert retry_after_seconds(answered(server, {"Retry-After": "7"})) == 7.0
    both = {"retry-after-ms": "250", "Retry-After": "1"}  # the precise one wins
    assert retry_after_seconds(answered(server, both)) == 0.25
    soon = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=120),
                                       usegmt=True)
    assert 100 < retry_after_seconds(answered(server, {"Retry-After": soon})) <= 120
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_seconds(answered(server, {"Retry-After": past})) == 0.0
    assert retry_after_seconds(answered(server, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(answered(server, {})) is None


# --- preflight --------------------------------------------------------------------------------

def test_preflight_asks_the_models_listing_with_the_key(server):
    agent = openai_agent(server, key_env="OPENAI_API_KEY")
    agent.preflight()  # 200: fine
    server.listing = (404, {"error": {"message": "no such route"}})
    agent.preflight()  # a proxy without a listing may still serve completions
    server.listing = (401, {"error": {"message": "Incorrect API key provided"}})
    with pytest.raises(AgentError, match=r"OPENAI_API_KEY rejected \(401\).*check the key"):
        agent.preflight()
    assert [path for path, _ in server.gets] == ["/v1/models"] * 3
    assert server.gets[0][1]["authorization"] == "Bearer sk-test-123"
    server.listing = (403, anthropic_error("permission_error", "key disabled"))
    with pytest.raises(AgentError, match=r"Anthropic API refused access \(403\): key disabled"):
        anthropic_agent(server).preflight()
    path, headers = server.gets[-1]
    assert path == "/v1/models" and headers["x-api-key"] == "sk-ant-test"


def test_preflight_reports_a_server_that_is_not_there(tmp_path):
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = OpenAIAgent(base_url=f"http://127.0.0.1:{port}/v1", retry=FAST)
    with pytest.raises(AgentError, match=f"cannot connect to http://127.0.0.1:{port}/v1/models"):
        agent.preflight()


# --- prices -----------------------------------------------------------------------------------

def test_prices_match_exactly_or_by_the_family_rules():
    assert list_price("o3-pro") == (20.0, 80.0)  # not o3's price
    assert list_price("gpt-5-pro") == (15.0, 120.0)  # not gpt-5's
    assert list_price("o3-2025-04-16") == (2.0, 8.0)  # a dated snapshot of o3
    assert list_price("gpt-4o-2024-08-06") == (2.5, 10.0)
    assert list_price("gpt-4o-2024-05-13") == (5.0, 15.0)  # a snapshot priced apart wins
    assert list_price("claude-opus-4-1-20250805") == (15.0, 75.0)
    assert list_price("claude-opus-4-20250514") == (15.0, 75.0)
    assert list_price("claude-opus-4-5-20251101") == (5.0, 25.0)  # newer Opus, newer price
    assert list_price("anthropic/claude-sonnet-4-5") == (3.0, 15.0)  # OpenRouter's vendor prefix
    for unknown in ("claude-opus-4-9", "o3-deep-research", "gpt-5-codex", "gpt-5.1-chat-latest",
                    "claude-sonnet-4-5-fast", "qwen3-coder"):
        assert list_price(unknown) is None, unknown  # no prefix guess
    assert PRICES_READ and PRICE_SOURCES


def test_cost_known_and_user_prices(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = f"http://127.0.0.1:{server.port}/v1"
    assert not make_agent("openai", base_url=local, model="qwen3-coder").cost_known
    agent = make_agent("openai", base_url=local, model="qwen3-coder", timeout=5.0,
                       price=(0.5, 2.0))
    assert agent.cost_known
    server.expect_path = "/v1/chat/completions"
    server.reply(200, chat_reply(GOOD, prompt_tokens=1000, completion_tokens=200))
    proposal = agent.propose(make_request(tmp_path))
    assert proposal.usage.cost_usd == pytest.approx((1000 * 0.5 + 200 * 2.0) / 1e6)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert make_agent("anthropic", model="claude-haiku-4-5").cost_known  # list price
    assert not make_agent("anthropic", model="claude-opus-9").cost_known
    with pytest.raises(UserError, match="cannot be negative"):
        make_agent("anthropic", price=(-1.0, 5.0))
    with pytest.raises(UserError, match="do not apply to --agent sweep"):
        make_agent("sweep", price=(0.0, 0.0))


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_anthropic_base_url_with_or_without_v1(server, tmp_path, suffix):
    server.reply(200, message_reply(GOOD))
    agent = anthropic_agent(server, base_url=f"http://127.0.0.1:{server.port}{suffix}")
    agent.preflight()
    agent.propose(make_request(tmp_path))
    assert [path for path, _, _ in server.requests] == ["/v1/messages"]  # not /v1/v1/messages
    assert [path for path, _ in server.gets] == ["/v1/models"]

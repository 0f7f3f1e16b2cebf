"""CLI backends against fake `claude` and `codex` executables put first on PATH.

The fakes parse their arguments the way the real tools document them (and reject what the real
tools reject), read the prompt from stdin as the real ones do (`claude -p` without a prompt
argument, `codex exec -`), resolve codex's --cd against their own working directory, edit
train.py in their working directory, and print the real output formats: stream-json events for
`claude -p --output-format stream-json --verbose`, JSONL events for `codex exec --json`, the
login check of `claude auth status` and `codex login status`.
FAKE_MODE picks a behaviour: ok, no-edit, fail-once, error-result, hang, offline (codex retries a
lost network forever), no-network (codex waits for a network that is not there; no-network-later:
from its second call on), helper (starts a
child that keeps stdout open, then exits), frames (fails with an Error: line, then stack frames).
FAKE_AUTH=out plays a CLI that is not logged in, FAKE_AUTH=badkey one given an API key that the
service refuses (its login check still passes, as the real one's does).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from loop_helpers import make_repo, run_cli

from autoresearch.agents import AgentError, AgentRefused, AgentRequest, make_agent
from autoresearch.agents.claude_cli import ClaudeAgent
from autoresearch.agents.codex_cli import CodexAgent
from autoresearch.errors import UserError
from autoresearch.execution.procs import pid_alive
from autoresearch.ledger.results import append_result, read_results
from autoresearch.model import Row
from autoresearch.target import parse_target

TRAIN_PY = (Path(__file__).parent.parent / "train.py").read_text()  # the real one
PROGRAM = "# program\nLower val_bpb. Marker-Okapi-42."
[OLD_LINE] = [line for line in TRAIN_PY.splitlines() if line.startswith("MATRIX_LR = ")]
NEW_LINE = "MATRIX_LR = 0.05  # raised by the agent"
EXPECTED = TRAIN_PY.replace(f"\n{OLD_LINE}\n", f"\n{NEW_LINE}\n")

COMMON = """\
import argparse, json, os, subprocess, sys, time
from pathlib import Path

def record(args, workdir, prompt=None):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({"args": vars(args), "cwd": os.getcwd(), "workdir": workdir,
                            "prompt": prompt, "marker": os.environ.get("FAKE_MARKER")}) + "\\n")

def logged_in():
    return os.environ.get("FAKE_AUTH", "in") in ("in", "badkey")

def frames(message):  # how a Rust CLI dies: its error, then a backtrace of unknown frames
    print(f"Error: {message}\\n\\nStack backtrace:", file=sys.stderr)
    for i in range(7):
        print(f"   {i}: <unknown>", file=sys.stderr)
    sys.exit(1)

def next_call():
    state = Path(os.environ["FAKE_STATE"])
    calls = int(state.read_text()) + 1 if state.exists() else 1
    state.write_text(str(calls))
    return calls

def behave(workdir):
    mode, calls = os.environ.get("FAKE_MODE", "ok"), next_call()
    if mode == "offline":  # what codex prints while it retries a network that is not there
        print("ERROR: stream disconnected before completion: error sending request for url "
              "(https://api.openai.com/v1/responses); retrying 5/5 in 3.2s", file=sys.stderr,
              flush=True)
    if mode == "no-network-later" and calls > 1:  # the network went away after the first call
        mode = "no-network"
    if mode == "no-network":  # codex without a network: it says so, then waits for ever
        print(json.dumps({"type": "error", "message": "Reconnecting... 1/5"}), flush=True)
        print("Reconnecting... waiting for network", file=sys.stderr, flush=True)
    if mode == "frames":
        frames("No such file or directory (os error 2)")
    if mode in ("hang", "offline", "no-network"):
        with open(os.environ["FAKE_STATE"] + ".pids", "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(60)
    train = Path(workdir) / os.environ.get("FAKE_FILE", "train.py")  # the file it edits
    if mode != "no-edit":  # like the real Edit tools: the old text must occur exactly once
        old, new = os.environ["FAKE_OLD"] + "\\n", os.environ["FAKE_NEW"] + "\\n"
        text = train.read_text()
        if text.count(old) != 1:
            sys.exit(f"Error: found {text.count(old)} matches of the string to replace")
        train.write_text(text.replace(old, new))
    if mode == "helper":  # e.g. a language server: inherits stdout and outlives the answer
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        Path(os.environ["FAKE_STATE"] + ".helper").write_text(str(helper.pid))
    return mode, calls
"""

FAKE_CLAUDE = COMMON + """
if sys.argv[1:2] == ["auth"]:  # `claude auth status`: JSON, exit 0 logged in, 1 not
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({"args": sys.argv[1:]}) + "\\n")
    if sys.argv[2:] != ["status"]:
        sys.exit(f"error: unknown command {sys.argv[2:]}")
    print(json.dumps({"loggedIn": logged_in(), "authMethod": "claude.ai" if logged_in() else
                      "none", "apiProvider": "firstParty"}, indent=2))
    sys.exit(0 if logged_in() else 1)
parser = argparse.ArgumentParser(prog="claude")
parser.add_argument("-p", "--print", action="store_true", dest="print_mode")
parser.add_argument("prompt", nargs="?")
parser.add_argument("--output-format", choices=["text", "json", "stream-json"], default="text")
parser.add_argument("--verbose", action="store_true")
parser.add_argument("--max-turns", type=int)
parser.add_argument("--permission-mode",
                    choices=["default", "acceptEdits", "bypassPermissions", "dontAsk", "plan"])
parser.add_argument("--allowedTools", "--allowed-tools")
parser.add_argument("--model")
args = parser.parse_args()
# like claude -p: the prompt argument, else all of stdin when it is not a terminal
prompt = args.prompt or ("" if sys.stdin.isatty() else sys.stdin.read())
record(args, os.getcwd(), prompt)
if not args.print_mode or not prompt:
    sys.exit("Error: Input must be provided either through stdin or as a prompt argument")
if args.output_format == "stream-json" and not args.verbose:
    sys.exit("Error: When using --print, --output-format=stream-json requires --verbose")
def emit(event):
    if args.output_format == "stream-json" or event["type"] == "result":
        print(json.dumps(event), flush=True)
def say(text):
    emit({"type": "assistant", "session_id": "s", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}]}})
def fail(message, cost=0):  # what claude -p prints when the call fails: an error result
    emit({"type": "result", "subtype": "success", "is_error": True, "duration_ms": 120,
          "num_turns": 1, "session_id": "s", "result": message, "total_cost_usd": cost,
          "usage": {"input_tokens": 0, "output_tokens": 0}})
    sys.exit(1)
emit({"type": "system", "subtype": "init", "session_id": "s", "cwd": os.getcwd(),
      "tools": ["Read", "Edit", "Write"], "model": args.model or "claude-sonnet-4-5"})
if not logged_in():
    fail("Not logged in \u00b7 Please run /login")
if os.environ.get("FAKE_AUTH") == "badkey":
    fail("Invalid API key \u00b7 Fix external API key")
if args.max_turns == 1 and "a tool" in prompt:  # the model wants a tool: out of turns
    emit({"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 1,
          "session_id": "s", "total_cost_usd": 0.003, "errors": [],
          "usage": {"input_tokens": 4, "output_tokens": 9}})
    sys.exit(1)
if args.max_turns == 1 and "train.py" not in prompt:  # a one-line question: a one-word answer
    say("OK")
    emit({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
          "result": "OK", "session_id": "s", "total_cost_usd": 0.002,
          "usage": {"input_tokens": 4, "output_tokens": 1}})
    sys.exit(0)
say("I will read train.py and raise the matrix learning rate.")
mode, calls = behave(os.getcwd())
if mode == "fail-once" and calls == 1:
    print("API Error: 500 Internal server error", file=sys.stderr)
    sys.exit(1)
if mode == "error-result":
    emit({"type": "result", "subtype": "error_during_execution", "is_error": True,
          "result": "", "total_cost_usd": 0.01, "num_turns": 2, "session_id": "s",
          "usage": {"input_tokens": 5, "output_tokens": 1}})
    sys.exit(1)
say("I raised the matrix learning rate.")
emit({
    "type": "result", "subtype": "success", "is_error": False, "duration_ms": 9000,
    "duration_api_ms": 8000, "num_turns": 4, "session_id": "5f1c", "total_cost_usd": 0.0421,
    "result": "I raised the matrix learning rate.\\n\\nDESCRIPTION: MATRIX_LR 0.04 -> 0.05, "
              "the model undertrains in 5 minutes\\nHYPOTHESIS: 5 minutes is short for 0.04",
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3000,
              "cache_read_input_tokens": 9000, "output_tokens": 450}})
"""

FAKE_CODEX = COMMON + """
parser = argparse.ArgumentParser(prog="codex")
sub = parser.add_subparsers(dest="command", required=True)
exec_ = sub.add_parser("exec")
exec_.add_argument("--json", action="store_true")
exec_.add_argument("-s", "--sandbox",
                   choices=["read-only", "workspace-write", "danger-full-access"])
exec_.add_argument("--skip-git-repo-check", action="store_true")
exec_.add_argument("-C", "--cd")
exec_.add_argument("-m", "--model")
exec_.add_argument("prompt", nargs="?", help="`-` (or none, with stdin piped): read stdin")
login = sub.add_parser("login")
login.add_subparsers(dest="login_command").add_parser("status")
args = parser.parse_args()
if args.command == "login":  # `codex login status`: one line on stderr, exit 0 or 1
    record(args, os.getcwd())
    if args.login_command != "status":
        sys.exit("Error: this fake only knows `codex login status`")
    print("Logged in using ChatGPT" if logged_in() else "Not logged in", file=sys.stderr)
    sys.exit(0 if logged_in() else 1)
workdir = os.path.abspath(args.cd or ".")  # like codex: --cd is resolved against its own cwd
piped = "" if sys.stdin.isatty() else sys.stdin.read()
if args.prompt in (None, "-"):  # like codex: the instructions are read from stdin
    prompt = piped
else:  # a prompt argument: piped stdin is appended to it
    prompt = args.prompt + (f"\\n\\n<stdin>\\n{piped}\\n</stdin>" if piped else "")
record(args, workdir, prompt)
if not prompt:
    sys.exit("No prompt provided via stdin.")
if not os.path.isdir(workdir):
    frames("No such file or directory (os error 2)")
os.chdir(workdir)
def emit(event):
    print(json.dumps(event), flush=True)
emit({"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"})
emit({"type": "turn.started"})
mode, calls = behave(workdir)
if mode == "fail-once" and calls == 1:
    emit({"type": "error", "message": "stream disconnected before completion"})
    emit({"type": "turn.failed", "error": {"message": "stream disconnected before completion"}})
    sys.exit(1)
emit({"type": "item.completed", "item": {"id": "item_0", "type": "reasoning",
                                         "text": "**Looking at the learning rates**"}})
emit({"type": "item.completed", "item": {"id": "item_1", "type": "file_change",
      "changes": [{"path": "train.py", "kind": "update"}], "status": "completed"}})
emit({"type": "item.completed", "item": {"id": "item_2", "type": "agent_message",
      "text": "Raised MATRIX_LR.\\nDESCRIPTION: MATRIX_LR 0.04 -> 0.05 (codex)"}})
emit({"type": "turn.completed",
      "usage": {"input_tokens": 24763, "cached_input_tokens": 24448, "output_tokens": 122}})
"""


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """A bin dir with fake claude and codex first on PATH; returns a reader of their call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, source in (("claude", FAKE_CLAUDE), ("codex", FAKE_CODEX)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{source}")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("FAKE_MODE", "ok")
    monkeypatch.delenv("FAKE_AUTH", raising=False)
    monkeypatch.delenv("CODEX_API_KEY", raising=False)
    monkeypatch.setenv("FAKE_OLD", OLD_LINE)  # the edit the fakes make: one real line of train.py
    monkeypatch.setenv("FAKE_NEW", NEW_LINE)

    def calls() -> list[dict]:
        log = tmp_path / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git work tree holding train.py, as the loop's would."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text(TRAIN_PY)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "train.py"], check=True)
    subprocess.run(git + ["commit", "-qm", "baseline"], check=True)
    return work


def make_request(repo: Path) -> AgentRequest:
    return AgentRequest(repo=repo, program=PROGRAM, train_py=TRAIN_PY, history=[],
                        best_val_bpb=0.9979, noise_threshold=0.002, experiment=4)


def test_claude_edits_and_reports(fakes, repo):
    agent = make_agent("claude", model="sonnet", timeout=30)
    assert agent.name == "claude:sonnet"
    proposal = agent.propose(make_request(repo))
    assert EXPECTED != TRAIN_PY and EXPECTED.count(NEW_LINE) == 1
    assert (repo / "train.py").read_text() == EXPECTED
    assert proposal.description == "MATRIX_LR 0.04 -> 0.05, the model undertrains in 5 minutes"
    assert proposal.hypothesis == "5 minutes is short for 0.04"
    assert proposal.usage.cost_usd == pytest.approx(0.0421)
    assert (proposal.usage.input_tokens, proposal.usage.output_tokens) == (12012, 450)
    [call] = fakes()
    args = call["args"]
    assert args["print_mode"] and args["output_format"] == "stream-json" and args["verbose"]
    assert args["permission_mode"] == "acceptEdits"
    assert "Edit" in args["allowedTools"].split(",") and "Bash" not in args["allowedTools"]
    assert args["model"] == "sonnet"
    assert Path(call["cwd"]) == repo
    assert args["prompt"] is None  # not an argument: on stdin
    prompt = call["prompt"]
    assert "Marker-Okapi-42" in prompt and TRAIN_PY.rstrip("\n") in prompt
    assert "DESCRIPTION:" in prompt and "HYPOTHESIS:" in prompt
    assert "Edit train.py" in prompt
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout
    assert status.strip() == "M train.py"


def test_claude_failure_is_retried(fakes, repo, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "fail-once")
    proposal = ClaudeAgent(_which("claude"), timeout=30, retry_delay=0.01).propose(
        make_request(repo))
    assert len(fakes()) == 2
    assert proposal.description.startswith("MATRIX_LR 0.04 -> 0.05")
    assert (repo / "train.py").read_text() == EXPECTED


def test_claude_error_results_exhaust_retries(fakes, repo, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "error-result")
    agent = ClaudeAgent(_which("claude"), timeout=30, attempts=3, retry_delay=0.01)
    with pytest.raises(AgentError, match="claude failed 3 times.*error_during_execution") as err:
        agent.propose(make_request(repo))
    assert len(fakes()) == 3
    assert err.value.usage.cost_usd == pytest.approx(0.03)  # failed runs still cost money
    assert (repo / "train.py").read_text() == TRAIN_PY  # the half-done edit was rolled back


def test_claude_hang_is_killed_at_the_timeout_once(fakes, repo, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_MODE", "hang")
    agent = ClaudeAgent(_which("claude"), timeout=1.0, attempts=3, retry_delay=0.01)
    # the fake hangs 60 s, then edits and succeeds: an AgentError means it was cut off
    with pytest.raises(AgentError) as err:
        agent.propose(make_request(repo))
    # not retried (the next call would time out too), and it quotes claude's own words, not
    # the JSON events they came in
    assert str(err.value) == ("claude: no result within 1s (killed, not retried); last output: "
                              "I will read train.py and raise the matrix learning rate.")
    [pid] = [int(p) for p in (tmp_path / "state.pids").read_text().split()]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_ctrl_c_kills_the_cli_too(fakes, repo, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_MODE", "hang")
    agent = ClaudeAgent(_which("claude"), timeout=30, attempts=1)
    pids = tmp_path / "state.pids"

    def interrupt():  # the user presses Ctrl-C once the CLI is running
        deadline = time.monotonic() + 10
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C raises KeyboardInterrupt even where the suite was started with SIGINT ignored (a
    # background job of a non-interactive shell)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            agent.propose(make_request(repo))
    finally:
        signal.signal(signal.SIGINT, previous)
    [pid] = [int(p) for p in pids.read_text().split()]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_claude_without_an_edit_is_refused(fakes, repo, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "no-edit")
    with pytest.raises(AgentRefused, match="left train.py unchanged") as refused:
        make_agent("claude", timeout=30).propose(make_request(repo))
    assert refused.value.usage.cost_usd == pytest.approx(0.0421)
    assert "model" not in fakes()[0]["args"] or fakes()[0]["args"]["model"] is None


def test_codex_edits_and_reports(fakes, repo):
    agent = make_agent("codex", model="gpt-5-codex", timeout=30)
    assert agent.name == "codex:gpt-5-codex"
    proposal = agent.propose(make_request(repo))
    assert (repo / "train.py").read_text() == EXPECTED
    assert proposal.description == "MATRIX_LR 0.04 -> 0.05 (codex)"
    assert (proposal.usage.input_tokens, proposal.usage.output_tokens) == (24763, 122)
    assert proposal.usage.cost_usd is None  # codex reports tokens, not dollars
    [call] = fakes()
    args = call["args"]
    assert args["command"] == "exec" and args["json"] and args["skip_git_repo_check"]
    assert args["sandbox"] == "workspace-write"
    assert Path(args["cd"]) == repo and Path(call["cwd"]) == repo
    assert args["model"] == "gpt-5-codex"
    assert args["prompt"] == "-"  # read from stdin
    assert "Marker-Okapi-42" in call["prompt"] and TRAIN_PY.rstrip("\n") in call["prompt"]


def test_codex_turn_failure_is_retried(fakes, repo, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "fail-once")
    proposal = CodexAgent(_which("codex"), timeout=30, retry_delay=0.01).propose(
        make_request(repo))
    assert len(fakes()) == 2
    assert proposal.description == "MATRIX_LR 0.04 -> 0.05 (codex)"
    assert (repo / "train.py").read_text() == EXPECTED


def test_missing_executables_are_user_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing here
    with pytest.raises(UserError, match="claude not found on PATH: install Claude Code or use "
                                        "--agent sweep"):
        make_agent("claude")
    with pytest.raises(UserError, match="codex not found on PATH"):
        make_agent("codex")
    with pytest.raises(UserError, match="--base-url applies to"):
        make_agent("codex", base_url="http://localhost:8000/v1")


def test_claude_not_logged_in_is_reported_in_its_own_words(fakes, repo, monkeypatch):
    monkeypatch.setenv("FAKE_AUTH", "out")
    agent = ClaudeAgent(_which("claude"), timeout=30, attempts=1)
    with pytest.raises(AgentError) as err:
        agent.propose(make_request(repo))
    assert str(err.value) == ("claude failed 1 times, last: exit code 1: "
                              "Not logged in \u00b7 Please run /login")


def test_claude_preflight_runs_auth_status_then_one_real_call(fakes, monkeypatch):
    agent = make_agent("claude", model="haiku", timeout=30)
    agent.preflight()  # logged in and the key works: nothing to say
    status, probe = fakes()
    assert status == {"args": ["auth", "status"]}
    args = probe["args"]
    assert args["print_mode"] and args["output_format"] == "stream-json" and args["verbose"]
    assert args["max_turns"] == 1 and args["model"] == "haiku"
    assert probe["prompt"] and args["prompt"] is None  # a tiny prompt, on stdin
    assert Path(probe["cwd"]) != Path.cwd() and not Path(probe["cwd"]).exists()  # a temp folder
    monkeypatch.setenv("FAKE_AUTH", "out")
    with pytest.raises(AgentError) as err:
        agent.preflight()
    assert str(err.value) == ("claude is not logged in: run `claude` and /login (or `claude auth "
                              "login`), or export ANTHROPIC_API_KEY")


def test_claude_preflight_catches_a_key_that_does_not_work(fakes, monkeypatch):
    monkeypatch.setenv("FAKE_AUTH", "badkey")  # `claude auth status` passes any key string
    with pytest.raises(AgentError) as err:
        make_agent("claude", timeout=30).preflight()
    assert str(err.value) == (
        "claude cannot work: a one-line test prompt failed (Invalid API key \u00b7 Fix external "
        "API key); log in with `claude` (/login) or fix ANTHROPIC_API_KEY, then run again")


def test_claude_preflight_passes_a_model_that_ran_out_of_turns(fakes, monkeypatch):
    monkeypatch.setattr("autoresearch.agents.claude_cli.PROBE_PROMPT", "Use a tool first.")
    make_agent("claude", timeout=30).preflight()  # it was reached: the key works


def test_claude_preflight_says_when_it_could_not_check(fakes, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "hang")
    monkeypatch.setattr("autoresearch.agents.cli.PREFLIGHT_TIMEOUT", 1.0)
    monkeypatch.setattr("autoresearch.agents.claude_cli.PROBE_PROMPT", "Edit train.py")  # hangs
    with pytest.raises(AgentError) as err:
        make_agent("claude", timeout=30).preflight()
    assert str(err.value) == (
        "could not check that claude works: `claude -p --output-format stream-json --verbose "
        "--max-turns 1` gave no answer within 1s (last output: I will read train.py and raise "
        "the matrix learning rate.); check the network, then run again")


def test_codex_preflight_runs_login_status(fakes, monkeypatch):
    agent = make_agent("codex", timeout=30)
    agent.preflight()
    [call] = fakes()
    assert call["args"]["command"] == "login" and call["args"]["login_command"] == "status"
    monkeypatch.setenv("FAKE_AUTH", "out")
    with pytest.raises(AgentError) as err:
        agent.preflight()
    assert str(err.value) == "codex is not logged in: run `codex login`, or export CODEX_API_KEY"
    monkeypatch.setenv("CODEX_API_KEY", "sk-codex-test-key-123")  # codex exec needs no login
    agent.preflight()
    assert len(fakes()) == 2  # and nothing was run to find that out


def test_sweep_preflight_is_a_no_op():
    agent = make_agent("sweep")
    agent.preflight()
    assert agent.cost_known


def test_a_helper_holding_stdout_does_not_stall_the_proposal(fakes, repo, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_MODE", "helper")  # its child sleeps 120 s with our stdout open
    agent = ClaudeAgent(_which("claude"), timeout=30, attempts=1)
    proposal = agent.propose(make_request(repo))  # waiting for EOF would time out after 30 s
    assert proposal.description.startswith("MATRIX_LR 0.04 -> 0.05")
    helper = int((tmp_path / "state.helper").read_text())
    assert not pid_alive(helper)  # the reaper ended it when the CLI exited


def test_the_request_environment_reaches_the_cli(fakes, repo):
    request = make_request(repo)
    request.env = {"FAKE_MARKER": "autoresearch-t-7"}
    make_agent("codex", timeout=30).propose(request)
    [call] = fakes()
    assert call["marker"] == "autoresearch-t-7"


def test_a_timeout_says_what_the_agent_last_printed(fakes, repo, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_MODE", "offline")
    agent = CodexAgent(_which("codex"), timeout=1.0, attempts=1)
    with pytest.raises(AgentError) as err:
        agent.propose(make_request(repo))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("codex: no result within 1s (killed, not retried); "
                              "last output: ERROR: stream disconnected before completion")
    assert "retrying 5/5" in message
    [pid] = [int(p) for p in (tmp_path / "state.pids").read_text().split()]
    assert not pid_alive(pid)


def test_codex_cost_is_known_only_with_a_price(fakes, repo):
    assert not make_agent("codex").cost_known  # it reports tokens, not dollars
    assert make_agent("claude").cost_known  # it reports total_cost_usd
    agent = make_agent("codex", timeout=30, price=(1.25, 10.0))
    assert agent.cost_known
    proposal = agent.propose(make_request(repo))
    assert proposal.usage.cost_usd == pytest.approx((24763 * 1.25 + 122 * 10.0) / 1e6)
    with pytest.raises(UserError, match="do not apply to --agent claude: it reports its own"):
        make_agent("claude", price=(3.0, 15.0))


def _which(name: str) -> str:
    path = shutil.which(name)
    assert path is not None
    return path


def test_codex_without_a_network_stops_at_once(fakes, repo, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_MODE", "no-network")  # it would wait for ever, past any timeout
    agent = CodexAgent(_which("codex"), timeout=600, attempts=3, retry_delay=0.01)
    with pytest.raises(AgentError) as err:
        agent.propose(make_request(repo))
    assert str(err.value) == (
        "codex: no network connection (it printed 'Reconnecting... waiting for "
        "network' and would wait for ever): check the network or proxy, then run the same "
        "command again")
    assert len(fakes()) == 1  # not retried
    [pid] = [int(p) for p in (tmp_path / "state.pids").read_text().split()]
    assert not pid_alive(pid)
    assert (repo / "train.py").read_text() == TRAIN_PY


@pytest.mark.parametrize("tool", ["claude", "codex"])
def test_a_failure_names_its_cause_not_stack_frames(fakes, repo, monkeypatch, tool):
    monkeypatch.setenv("FAKE_MODE", "frames")  # "Error: ..." then "0: <unknown>" ... "6: ..."
    agent = make_agent(tool, timeout=30)
    agent.attempts, agent.retry_delay = 1, 0.01
    with pytest.raises(AgentError) as err:
        agent.propose(make_request(repo))
    assert str(err.value) == (f"{tool} failed 1 times, last: exit code 1: Error: No such file "
                              "or directory (os error 2)")


def test_codex_error_events_come_first(fakes, repo, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "fail-once")  # an `error` and a `turn.failed` event
    agent = CodexAgent(_which("codex"), timeout=30, attempts=1)
    with pytest.raises(AgentError) as err:
        agent.propose(make_request(repo))
    assert str(err.value) == ("codex failed 1 times, last: exit code 1: stream disconnected "
                              "before completion")


@pytest.mark.parametrize("tool", ["claude", "codex"])
def test_a_prompt_beyond_the_argument_limit_goes_on_stdin(fakes, repo, tool):
    request = make_request(repo)
    notes = "Keep notes." * 20_000  # 220 KB: over the 128 KiB that one argument may have
    request.program = PROGRAM + "\n" + notes
    proposal = make_agent(tool, timeout=30).propose(request)
    assert proposal.description.startswith("MATRIX_LR 0.04 -> 0.05")
    [call] = fakes()
    assert notes in call["prompt"]


# ---- the loop through its real CLI, with the paths users type ---------------------------------

FAKE_TRAIN_LR = "MATRIX_LR = 0.04  # does nothing: a change of it is a no-op"  # loop_fake_train


def codex_night(cwd: Path, where: str) -> subprocess.CompletedProcess:
    return run_cli("run", "--tag", "t", "--agent", "codex", "-C", where, "--noise-runs", "0",
                   "--max-experiments", "1", "--no-sample", "--plain", "--train-cmd",
                   f"{sys.executable} train.py", cwd=cwd, timeout=180)


# "-C ." as users type it stays quick; the other spellings go the same way (slow)
@pytest.mark.parametrize("where", ["-C .", pytest.param("-C repo", marks=pytest.mark.slow),
                                   pytest.param("-C repo/sub", marks=pytest.mark.slow)])
def test_codex_loop_with_a_relative_repo(fakes, tmp_path, monkeypatch, where):
    """`-C .` from the checkout, `-C repo` from its parent, `-C repo/sub` from a subfolder:
    the work tree is made where it belongs and codex gets it as an absolute --cd."""
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    monkeypatch.setenv("FAKE_OLD", FAKE_TRAIN_LR)
    monkeypatch.setenv("FAKE_NEW", "MATRIX_LR = 0.05")
    cwd, path = (repo, ".") if where == "-C ." else (tmp_path, where.split()[1])
    out = codex_night(cwd, path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    rows = read_results(repo / "results.tsv")
    assert [r.kind for r in rows] == ["baseline", "experiment"] and rows[1].agent == "codex"
    assert rows[1].description == "MATRIX_LR 0.04 -> 0.05 (codex)"
    [call] = [c for c in fakes() if c["args"]["command"] == "exec"]
    tree = repo / ".autoresearch" / "t" / "trees" / "0"
    assert call["args"]["cd"] == str(tree) and Path(call["cwd"]) == tree
    assert not (repo / "repo").exists() and not (repo / "sub" / ".autoresearch").exists()
    again = codex_night(cwd, path)  # and the same command again continues, as promised
    assert again.returncode == 0 and "already exists" not in again.stderr, again.stderr


def test_a_failed_login_check_leaves_nothing_behind(fakes, tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("FAKE_AUTH", "out")
    out = codex_night(repo, ".")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: codex is not logged in: run `codex login`, or export CODEX_API_KEY"]
    assert not (repo / ".autoresearch").exists()  # no tag state, no work tree
    assert subprocess.run(["git", "-C", str(repo), "branch", "--list", "autoresearch/*"],
                          capture_output=True, text=True, check=True).stdout == ""


def test_every_command_finds_the_root_from_a_subfolder(tmp_path):
    repo = make_repo(tmp_path / "repo")
    sub = repo / "sub" / "deeper"
    sub.mkdir(parents=True)
    for args in (("summary",), ("-C", "..", "summary"), ("results",)):
        out = run_cli(*args, cwd=sub)
        assert out.returncode == 1
        assert out.stderr.strip() == (f"error: {repo / 'results.tsv'} not found: "
                                      + ("the loop writes it after its first run"
                                         if args == ("results",) else
                                         "run the loop first, or point --results at a file"))
    for verb in ("status", "journal"):  # the verbs that read the loop's state name the root too
        out = run_cli(verb, cwd=sub)
        assert out.returncode == 1
        assert out.stderr.strip().startswith(f"error: no loop has run in {repo} yet"), verb
    append_result(repo / "results.tsv", Row("abcdef0", 1.0, 40.0, "keep", "baseline",
                                            experiment=1, tag="t", kind="baseline"))
    for cwd, args in ((sub, ("summary",)), (tmp_path, ("-C", "repo", "summary")),
                      (tmp_path, ("-C", "repo/sub", "summary")),
                      (tmp_path, ("-C", str(repo), "results", "-C", "sub"))):
        out = run_cli(*args, cwd=cwd)
        assert out.returncode == 0, (args, out.stderr)
        assert "1.000000" in out.stdout, args


@pytest.mark.slow
def test_a_fatal_agent_error_is_said_at_once(fakes, tmp_path, monkeypatch):
    """The agent's reason is printed when it happens, not after the runs under way end."""
    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("FAKE_MODE", "no-network-later")
    monkeypatch.setenv("FAKE_OLD", 'MODE = "ok"  # ok crash import oom nan hang orphan stray '
                                   'nanvalue tamper poison valcache')
    monkeypatch.setenv("FAKE_NEW", 'MODE = "hang"')  # experiment #2 runs until its --timeout
    out = run_cli("run", "--tag", "t", "--agent", "codex", "--noise-runs", "0", "--no-sample",
                  "--plain", "--timeout", "10", "--train-cmd", f"{sys.executable} train.py",
                  cwd=repo, timeout=180)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    said = next(i for i, line in enumerate(lines) if "stopping: codex: no network "
                "connection" in line and "waiting for the runs under way" in line)
    ended = next(i for i, line in enumerate(lines) if line.split()[1:3] == ["#2", "crash"])
    assert said < ended
    assert out.stderr.strip().splitlines()[-1].startswith("error: codex: no network connection")


def test_a_cli_agent_edits_one_of_two_files_and_a_retry_starts_from_both(fakes, tmp_path,
                                                                          monkeypatch):
    """A target with two editable files: the prompt shows both, the agent edits one of them;
    after a failed attempt both are put back before the next."""
    work = tmp_path / "two"
    work.mkdir()
    files = {"model.py": "WEIGHT = 0.5\n", "features.py": "SCALE = 1.0\n"}
    for name, text in files.items():
        (work / name).write_text(text)
    target = parse_target({"editable": ["model.py", "features.py"], "command": "python e.py",
                           "timeout": 60, "metric": {"name": "accuracy", "direction": "higher"}})
    monkeypatch.setenv("FAKE_FILE", "features.py")
    monkeypatch.setenv("FAKE_OLD", "SCALE = 1.0")
    monkeypatch.setenv("FAKE_NEW", "SCALE = 2.0")
    monkeypatch.setenv("FAKE_MODE", "fail-once")  # edits, then fails: the retry must start clean
    request = AgentRequest(repo=work, program=PROGRAM, train_py=files["model.py"], history=[],
                           target=target, files=files)
    ClaudeAgent(_which("claude"), timeout=30, retry_delay=0.01).propose(request)
    assert (work / "features.py").read_text() == "SCALE = 2.0\n"
    assert (work / "model.py").read_text() == "WEIGHT = 0.5\n"
    prompt = fakes()[0]["prompt"]
    assert "Edit model.py and features.py in the current directory" in prompt
    assert "# Current model.py\n```python\nWEIGHT = 0.5\n```" in prompt
    assert "# Current features.py\n```python\nSCALE = 1.0\n```" in prompt
    assert "train.py" not in prompt

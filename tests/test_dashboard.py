"""The dashboard against a real night: a git repo with kept, discarded and crashed commits (the
tried ones on side refs), run directories, results.tsv and live.json. First the JSON API over
HTTP (including traversal attempts and other methods), then the page in a real headless Chromium
driven through chromedriver's W3C WebDriver API.
"""

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from autoresearch.artifacts.checkpoints import run_path
from autoresearch.ledger.results import append_result, read_results
from autoresearch.ledger.state import State, save_state
from autoresearch.memory import journal
from autoresearch.memory.journal import Entry
from autoresearch.model import Row
from autoresearch.policy import Noise
from autoresearch.review.dashboard import BASELINE_NOTE, Board, make_server
from autoresearch.review.views import digest

TAG = "night"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage", "--window-size=1440,1200"]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def train_py(lr: str, depth: str) -> str:
    return f'"""toy train.py"""\n\nMATRIX_LR = {lr}\nDEPTH = {depth}\nWINDOW = "SSSL"\n'


def add_run(repo: Path, n: int, code: str, status: str, bpb: float, description: str,
            tried: bool, **columns) -> Row:
    """Commit train.py like the loop does, write its run dir, append its row (with `columns`)."""
    (repo / "train.py").write_text(code)
    git(repo, "commit", "-qam", description)
    commit = git(repo, "rev-parse", "HEAD")
    if tried:  # the loop keeps tried commits on a side ref and moves the branch back
        git(repo, "update-ref", f"refs/autoresearch/{TAG}/tried/{n}", commit)
        git(repo, "reset", "-q", "--hard", "HEAD~1")
    run_dir = repo / run_path(TAG, n, commit)  # where the loop puts run n
    run_dir.mkdir(parents=True)
    (run_dir / "train.py").write_text(code)
    progress = "".join(f"step {s:05d} ({s * 10:.1f}%) | loss 4.{s}00000 | remaining {30 - s}s\r"
                       for s in range(3))
    summary = "" if status == "crash" else (
        f"\nprofile: cpu\n---\nval_bpb:          {bpb:.6f}\ntraining_seconds: 15.0\n")
    tail = "Traceback: SyntaxError: invalid syntax\n" if status == "crash" else ""
    (run_dir / "run.log").write_text(f"starting run {n}\n{progress}\n{summary}{tail}")
    (run_dir / "metrics.json").write_text(json.dumps({"val_bpb": bpb, "status": status}))
    if status == "keep":
        (run_dir / "sample_output.txt").write_text(f"The capital of France is sample {n}")
    row = Row(commit=commit[:7], val_bpb=bpb, memory_gb=0.0 if status == "crash" else 1.5,
              status=status, description=description, experiment=n,
              kind="baseline" if n == 1 else "experiment", tag=TAG,
              timestamp=f"2026-01-01T00:{n:02d}:00+00:00", total_seconds=20.0,
              run_dir=run_path(TAG, n, commit), profile="cpu", device="cpu", **columns)
    append_result(repo / "results.tsv", row)
    return row


@pytest.fixture
def night(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", f"autoresearch/{TAG}")
    (repo / "train.py").write_text(train_py("0.04", "8"))
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "harness")
    add_run(repo, 1, train_py("0.04", "8") + "# baseline\n", "keep", 1.000000, "baseline", False)
    add_run(repo, 2, train_py("0.05", "8") + "# baseline\n", "keep", 0.990000,
            "matrix lr 0.04 -> 0.05", False)
    add_run(repo, 3, train_py("0.05", "12") + "# baseline\n", "discard", 0.995000,
            "depth 8 -> 12 <script>alert(1)</script>", True)
    add_run(repo, 4, train_py("0.05", "8") + "def broken(:\n", "crash", 0.0,
            "refactor attention", True)
    live = repo / ".autoresearch" / TAG / "live.json"
    live.parent.mkdir(parents=True)
    live.write_text(json.dumps({
        "experiment": 5, "commit": "abcdef1", "description": "try swiglu", "phase": "training",
        "step": 42, "progress_pct": 37.5, "remaining_s": 190, "pid": os.getpid(),
        "started_at": datetime.now(timezone.utc).isoformat(),
        "updated_at": datetime.now(timezone.utc).isoformat()}))
    return repo


@pytest.fixture
def server(night: Path):
    srv = make_server(Board(night, night / "results.tsv"), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def raw_request(base: str, method: str, path: str, headers: dict | None = None):
    """http.client sends the path byte for byte (requests/urllib3 would normalise dot segments)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest(method, path, skip_host=bool(headers and "Host" in headers))
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


# ---- the JSON API


def test_results_and_live(server, night):
    data = requests.get(f"{server}/api/results", timeout=10).json()
    assert data["tag"] == TAG
    rows = data["rows"]
    assert [r["status"] for r in rows] == ["keep", "keep", "discard", "crash"]
    assert [r["best"] for r in rows] == [1.0, 0.99, 0.99, 0.99]
    assert rows[3]["val_bpb"] == 0.0 and rows[1]["has_sample"] and not rows[2]["has_sample"]
    lo, hi = data["y_limits"]
    assert 0.9 < lo < 0.99 and 1.0 < hi < 1.01
    assert data["summary"]["best_experiment"] == 2 and data["summary"]["crashed"] == 1
    assert data["best"]["label"] == "0.990000 (baseline - 1 kept gain)"
    assert data["best"]["commit"] == rows[1]["commit"]
    assert data["summary"]["hours_label"] == "CPU hours"
    again = requests.get(f"{server}/api/results", params={"since": data["version"]}, timeout=10)
    assert again.json() == {"version": data["version"], "unchanged": True}
    add_run(night, 5, train_py("0.06", "8"), "keep", 0.98, "matrix lr 0.05 -> 0.06", False)
    grown = requests.get(f"{server}/api/results", params={"since": data["version"]}, timeout=10)
    assert [r["n"] for r in grown.json()["rows"]] == [1, 2, 3, 4, 5]  # no stale parsed rows
    live = requests.get(f"{server}/api/live", timeout=10).json()
    assert live["tag"] == TAG and live["live"]["phase"] == "training" and live["running"]
    assert 0 <= live["live"]["age_s"] < 60
    path = night / ".autoresearch" / TAG / "live.json"
    gone = 2**22 + 7  # above Linux's largest pid: the loop that wrote live.json is dead
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": gone}))
    assert requests.get(f"{server}/api/live", timeout=10).json()["running"] is False


def test_diff_log_sample_metrics(server, night):
    commit3 = requests.get(f"{server}/api/results", timeout=10).json()["rows"][2]["commit"]
    for ident in ("3", commit3, commit3[:5]):
        diff = requests.get(f"{server}/api/diff/{ident}", timeout=10).json()
        assert diff["n"] == 3 and diff["source"].startswith("git diff")
        assert "-DEPTH = 8" in diff["text"] and "+DEPTH = 12" in diff["text"]
    # the baseline has no parent: no diff, and no "no change" either
    baseline = requests.get(f"{server}/api/diff/1", timeout=10).json()
    assert baseline == {"n": 1, "source": None, "text": None, "note": BASELINE_NOTE}
    log = requests.get(f"{server}/api/log/2", timeout=10).json()["text"]
    assert "step 00002 (20.0%) | loss 4.200000 | remaining 28s" in log.splitlines()  # \r split
    assert log.splitlines()[-1] == "training_seconds: 15.0"
    assert requests.get(f"{server}/api/sample/2", timeout=10).json()["text"].endswith("sample 2")
    assert requests.get(f"{server}/api/sample/3", timeout=10).json()["text"] is None
    metrics = requests.get(f"{server}/api/metrics/4", timeout=10).json()["metrics"]
    assert metrics["status"] == "crash"
    for path in ("/api/log/9", "/api/diff/0000000", "/api/nothing/1", "/api/log/", "/favicon.ico"):
        assert requests.get(f"{server}{path}", timeout=10).status_code == 404, path


def test_diff_without_git_uses_run_dir_copies(tmp_path):
    for n, commit, code, status in ((1, "aaaaaaa", "A = 1\n", "keep"),
                                    (2, "bbbbbbb", "A = 2\n", "discard")):
        run_dir = tmp_path / "runs" / f"{n:04d}-{commit}"
        run_dir.mkdir(parents=True)
        (run_dir / "train.py").write_text(code)
        append_result(tmp_path / "results.tsv", Row(commit, 1.0 - n / 100, 1.0, status, f"r{n}",
                                                    experiment=n))
    board = Board(tmp_path, tmp_path / "results.tsv")
    diff = board.diff("2")
    assert diff["source"] == "0001-aaaaaaa → 0002-bbbbbbb"
    assert "-A = 1" in diff["text"] and "+A = 2" in diff["text"]
    assert board.diff("1")["note"] == BASELINE_NOTE  # the first row of another tool's file


def test_no_path_escapes(server, night, tmp_path):
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "run.log").write_text("SECRET")
    # a ledger row naming a run dir outside runs/ is not followed
    append_result(night / "results.tsv", Row("ccccccc", 0.98, 1.0, "discard", "evil", experiment=9,
                                             tag=TAG, run_dir="runs/../../outside"))
    assert requests.get(f"{server}/api/log/9", timeout=10).json()["text"] is None
    attempts = ["/api/log/../../etc/passwd", "/api/log/..%2f..%2fetc%2fpasswd",
                "/api/log/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/api/log/%2E%2E/%2E%2E/etc/passwd",
                "/api/log/1/../../../etc/passwd", "/api/log/2%00", "/..%2f..%2fetc/passwd",
                "/etc/passwd", "//etc/passwd", "/api/diff/1;cat%20/etc/passwd",
                "/api/diff/--output=x", "/api/sample/..", "/static/../../../etc/passwd"]
    for path in attempts:
        status, body = raw_request(server, "GET", path)
        assert status == 404, path
        assert b"root:" not in body and b"SECRET" not in body


def test_read_only_and_host_checked(server):
    for method in ("POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW"):
        status, _ = raw_request(server, method, "/api/results")
        assert status == 405, method
    assert requests.post(f"{server}/", data="x", timeout=10).status_code == 405
    status, _ = raw_request(server, "GET", "/api/results", {"Host": "evil.example:80"})
    assert status == 403  # a DNS-rebinding page cannot read the API
    status, _ = raw_request(server, "GET", "/", {"Host": "localhost:1"})
    assert status == 200


def test_dashboard_command_serves(night):
    """`agent_loop.py dashboard` is a blocking server: start the real command, then poll it."""
    port = free_port()
    code = ("import typer, sys; from autoresearch.review.review_cli import register; "
            "app = typer.Typer(); register(app); app()")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "dashboard", "--port", str(port),
         "--results", str(night / "results.tsv")],
        cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        data = wait_for(lambda: get_json(f"http://127.0.0.1:{port}/api/results"), 20)
        assert len(data["rows"]) == 4
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert f"dashboard: http://127.0.0.1:{port}/" in output


def get_json(url: str):
    try:
        return requests.get(url, timeout=2).json()
    except requests.RequestException:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(probe, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {probe}")
        time.sleep(interval)


# ---- the page in a real browser


class WebDriver:
    """The few W3C WebDriver commands the test needs, as plain HTTP to chromedriver."""

    def __init__(self, url: str, profile_dir: Path):
        self.url = url
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": shutil.which("chromium"),
            "args": CHROMIUM_FLAGS + [f"--user-data-dir={profile_dir}"]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method: str, path: str, body: dict | None = None):
        prefix = "" if path == "/session" else f"/session/{self.session}"
        response = requests.request(method, f"{self.url}{prefix}{path}", json=body, timeout=60)
        value = response.json()["value"]
        if response.status_code != 200:
            raise AssertionError(f"webdriver {path}: {value}")
        return value

    def js(self, script: str, *args):
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def click(self, css: str) -> None:
        element = self.call("POST", "/element", {"using": "css selector", "value": css})
        self.call("POST", f"/element/{next(iter(element.values()))}/click", {})

    def wait_js(self, script: str, timeout: float = 10.0):
        return wait_for(lambda: self.js(script), timeout)


@pytest.fixture
def browser(tmp_path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(f"the dashboard browser test needs Chromium and chromedriver: {INSTALL}")
    port = free_port()
    proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: (get_json(f"{url}/status") or {}).get("value", {}).get("ready"), 20)
        web = WebDriver(url, tmp_path / "chromium-profile")
        yield web
        web.call("DELETE", "")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_page_in_chromium(server, night, browser, tmp_path):
    web = browser
    web.call("POST", "/url", {"url": f"{server}/"})
    assert web.wait_js("return document.querySelectorAll('#table tbody tr').length === 4")
    # the chart: 4 markers, the crash as a red cross, the running best as a path
    assert web.js("return document.querySelectorAll('#chart .pt').length") == 4
    assert web.js("return document.querySelector('#chart .pt[data-n=\"4\"]').getAttribute('stroke')"
                  ) == "#d73027"
    assert web.js("return document.querySelectorAll('#chart path[stroke=\"#1a9850\"]').length") == 1
    stats = web.js("return document.getElementById('stats').innerText")
    assert "4" in stats and "0.990000" in stats
    live = web.wait_js("const t = document.querySelector('#live .worker .what'); "
                       "return t && t.innerText.includes('swiglu') && t.innerText")
    assert live == "#5 · abcdef1 · training · step 42 · 190 s left — try swiglu"
    # live.json from a loop with one worker before it had several: one line, worker 0
    assert web.js("return document.querySelectorAll('#live .worker').length") == 1
    assert web.js("return document.querySelector('#live .worker .who').textContent") == "w0"
    assert web.js("return document.querySelector('#live .bar > div').style.width") == "37.5%"
    # the agent's text is shown as text, never run as HTML
    assert web.js("return document.querySelector('#table tbody tr[data-n=\"3\"] .desc')"
                  ".textContent").endswith("<script>alert(1)</script>")
    # open the discarded experiment's diff with a real click
    web.click("#table tbody tr[data-n='3']")
    diff = web.wait_js("const d = document.getElementById('diff'); return d && d.textContent")
    assert "+DEPTH = 12" in diff and "-DEPTH = 8" in diff
    assert web.js("return document.querySelectorAll('#diff .d-add').length") >= 1
    web.click("#tabs button[data-tab='log']")
    assert "val_bpb:" in web.wait_js(
        "const d = document.getElementById('log'); return d && d.textContent")
    # filter: crashed only
    web.click("#filters button[data-filter='crash']")
    assert web.js("return [...document.querySelectorAll('#table tbody tr')].map(r => r.dataset.n)"
                  ) == ["4"]
    web.click("#filters button[data-filter='all']")
    # a new experiment appears without a reload
    web.js("window.__same_page = true")
    add_run(night, 5, train_py("0.06", "8") + "# baseline\n", "keep", 0.985000, "matrix lr 0.06",
            False)
    assert web.wait_js("return !!document.querySelector('#table tbody tr[data-n=\"5\"]')", 8)
    assert web.js("return window.__same_page === true")
    assert web.js("return document.querySelectorAll('#chart .pt').length") == 5
    web.click("#table tbody tr[data-n='5']")
    web.click("#tabs button[data-tab='sample']")
    assert web.wait_js("const d = document.getElementById('sample'); return d && d.textContent"
                       ).endswith("sample 5")
    web.click("#tabs button[data-tab='diff']")
    web.wait_js("return !!document.getElementById('diff')")
    shot = base64.b64decode(web.call("GET", "/screenshot"))
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    (Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))).write_bytes(shot)


SPLIT_WORDS = """
// Each "N word" of the experiments card on one line: a Range over its text has one box per line.
const card = document.getElementById("stat-experiments");
const frame = card.getBoundingClientRect();
const walker = document.createTreeWalker(card.querySelector(".sub"), NodeFilter.SHOW_TEXT);
const text = [];
for (let node = walker.nextNode(); node; node = walker.nextNode()) text.push(node);
const out = {};
for (const word of arguments[0]) {
  const node = text.find(t => t.data.includes(word));
  const range = document.createRange();
  range.setStart(node, node.data.indexOf(word));
  range.setEnd(node, node.data.indexOf(word) + word.length);
  const boxes = [...range.getClientRects()].filter(r => r.width > 0);
  out[word] = {lines: new Set(boxes.map(r => Math.round(r.top))).size,
               inside: boxes.every(r => r.left >= frame.left && r.right <= frame.right)};
}
return out;
"""


@pytest.mark.slow
def test_page_cards_chart_diff_and_idle_in_chromium(server, night, browser):
    noise = Noise(threshold=0.003, floor=0.001, values=[1.0], std=None, spread=None,
                  rule="floor only")
    save_state(night, State(tag=TAG, branch=f"autoresearch/{TAG}", base_commit="0" * 40,
                            created_at="", fixed_sha256={}, noise=noise))
    web = browser
    web.call("POST", "/url", {"url": f"{server}/"})
    assert web.wait_js("return document.querySelectorAll('#table tbody tr').length === 4")
    # the cards: the best as everywhere else, hours named after the CPU that ran them
    assert web.js("return document.getElementById('stat-best').innerText").startswith(
        "BEST VAL_BPB\n0.990000 (baseline - 1 kept gain)")
    assert web.js("return document.querySelector('#stat-hours .label').textContent") == \
        "CPU hours"
    # "1 crashed" (and the others) never split over two lines, however narrow the window
    words = ["1 kept", "1 discarded", "1 crashed"]  # experiments: the baseline is a run
    for width in (1440, 1280, 1100, 1000, 900, 760, 600, 420):
        web.call("POST", "/window/rect", {"width": width, "height": 1200})
        measured = web.js(SPLIT_WORDS, words)
        assert measured == {w: {"lines": 1, "inside": True} for w in words}, (width, measured)
    web.call("POST", "/window/rect", {"width": 1440, "height": 1200})
    web.wait_js("return document.getElementById('chart').clientWidth > 1000")
    web.js("window.dispatchEvent(new Event('resize'))")
    # the running best and the noise band reach the right end of the x axis
    ends = web.js("""
        const axis = [...document.querySelectorAll('#chart .axis line')]
          .find(l => l.getAttribute('y1') === l.getAttribute('y2'));
        const right = b => b.x + b.width;
        return [Number(axis.getAttribute('x2')),
                right(document.getElementById('best-line').getBBox()),
                right(document.getElementById('noise-band').getBBox())];""")
    assert ends[1] == pytest.approx(ends[0], abs=0.5) and ends[2] == pytest.approx(ends[0], abs=0.5)
    # the best's label next to its point, inside the plot
    label = web.js("""
        const svg = document.getElementById('chart').getBoundingClientRect();
        const b = document.getElementById('best-label').getBoundingClientRect();
        const p = document.querySelector('#chart .pt[data-n="2"]').getBoundingClientRect();
        return {text: document.getElementById('best-label').textContent,
                inside: b.left >= svg.left && b.right <= svg.right && b.top >= svg.top,
                gap: Math.hypot(Math.max(b.left - p.right, 0, p.left - b.right),
                                Math.max(b.top - p.bottom, 0, p.top - b.bottom))};""")
    assert label["text"].startswith("best 0.990000 (baseline - 1 kept gain) (#2)")
    assert label["inside"] and label["gap"] < 20, label
    # the baseline's diff tab says what it is
    web.click("#table tbody tr[data-n='1']")
    assert web.wait_js("const d = document.getElementById('diff-note'); return d && d.textContent"
                       ) == BASELINE_NOTE
    # training: a bar; the loop gone: no empty bar that looks stuck, and "idle" said once
    bar = "return [getComputedStyle(document.querySelector('#live .bar')).visibility, " \
          "[...document.querySelector('#live .worker').children].map(c => c.textContent)" \
          ".join(' ').split(/\\s+/)]"
    assert web.wait_js(f"{bar.replace('return ', 'const s = ')}; "
                       "return s[1].includes('37.5%') && s")[0] == "visible"
    live = night / ".autoresearch" / TAG / "live.json"
    live.write_text(json.dumps({**json.loads(live.read_text()), "pid": 2**22 + 7}))
    hidden, words = web.wait_js(f"{bar.replace('return ', 'const s = ')}; "
                                "return s[1].includes('idle') && s", 8)
    assert hidden == "hidden" and words.count("idle") == 1 and "agent:" not in words, words
    # the legend counts the crashes drawn (an entry hidden when there are none)
    assert web.js("return document.getElementById('legend-crash').hidden") is False
    assert web.js("return document.getElementById('legend-crash').textContent") == \
        "crashed (1, bottom edge)"
    results = night / "results.tsv"  # the crash's row gone: the legend names no crashes
    results.write_text("".join(line for line in results.read_text().splitlines(keepends=True)
                               if "\tcrash\t" not in line))
    assert web.wait_js("return document.getElementById('legend-crash').hidden", 8)


LIVE_LINES = """
return [...document.querySelectorAll('#live .worker')].map(line => ({
  worker: line.dataset.worker,
  ...Object.fromEntries(['who', 'what', 'pct', 'agent'].map(
    part => [part, line.querySelector('.' + part).textContent])),
  bar: getComputedStyle(line.querySelector('.bar')).visibility,
  fill: line.querySelector('.bar > div').style.width}));
"""


@pytest.mark.slow
def test_page_shows_each_worker_and_the_journal_in_chromium(server, night, browser):
    """Two GPUs: the experiments table says who ran each run, the live panel has a line per
    worker (w0's GPU trains while its agent proposes, w1's GPU waits for its agent's fix), the
    queue, and the research journal's digest."""
    add_run(night, 5, train_py("0.06", "8") + "# baseline\n", "keep", 0.985, "matrix lr 0.06",
            False, worker=0, gpu="0")
    add_run(night, 6, train_py("0.06", "10") + "# baseline\n", "discard", 0.99, "depth 10",
            True, worker=1, gpu="1")
    entries = [Entry(n=r.experiment, kind=r.kind, commit=r.commit, parent="", worker=r.worker or 0,
                     description=r.description, status=r.status,
                     val_bpb=r.val_bpb if r.status != "crash" else None)
               for r in read_results(night / "results.tsv")]
    journal.append(night / ".autoresearch" / TAG / journal.JOURNAL, entries)
    now = datetime.now(timezone.utc).isoformat()
    w0 = {"worker": 0, "gpu": "0", "device": "NVIDIA H200", "phase": "training",
          "experiment": 7, "kind": "experiment", "commit": "abcdef1", "description": "try swiglu",
          "step": 42, "progress_pct": 37.5, "remaining_s": 190, "agent_phase": "proposing",
          "agent_task": "a new experiment"}
    w1 = {"worker": 1, "gpu": "1", "device": "NVIDIA H200", "phase": "idle", "experiment": 6,
          "commit": "1234567", "description": "depth 10", "step": 30, "progress_pct": 100.0,
          "agent_phase": "proposing", "agent_task": "fix #4: refactor attention"}
    (night / ".autoresearch" / TAG / "live.json").write_text(json.dumps({
        **w1, "workers": {"1": w1, "0": w0}, "tag": TAG, "agent": "sweep", "queued": 2,
        "confirming": 1, "time_left_s": 3720, "stopping": False, "pid": os.getpid(),
        "updated_at": now}))
    web = browser
    web.call("POST", "/url", {"url": f"{server}/"})
    assert web.wait_js("return document.querySelectorAll('#table tbody tr').length === 6")
    workers = web.js("return Object.fromEntries([...document.querySelectorAll('#table tbody tr')]"
                     ".map(tr => [tr.dataset.n, tr.querySelector('td.worker').textContent]))")
    assert workers == {"1": "", "2": "", "3": "", "4": "", "5": "w0 gpu0", "6": "w1 gpu1"}
    assert web.js("return [...document.querySelectorAll('#table th')].map(th => th.textContent)"
                  "[6]") == "worker"
    lines = web.wait_js(f"const lines = (() => {{ {LIVE_LINES} }})(); "
                        "return lines.length === 2 && lines")
    assert lines == [
        {"worker": "0", "who": "w0 gpu 0 · NVIDIA H200",
         "what": "#7 · abcdef1 · training · step 42 · 190 s left — try swiglu", "pct": "37.5%",
         "agent": "agent: proposing a new experiment", "bar": "visible", "fill": "37.5%"},
        {"worker": "1", "who": "w1 gpu 1 · NVIDIA H200", "what": "idle", "pct": "",
         "agent": "agent: proposing fix #4: refactor attention", "bar": "hidden", "fill": "0%"}]
    assert web.js("return document.getElementById('live-queue').textContent") == \
        "queued 2 · confirming 1"
    assert web.js("return document.getElementById('live-state').textContent") == \
        "running · agent sweep · 1h02m left in the session"
    # the journal's digest, as `agent_loop.py journal` prints it, in a block of its own
    expected = digest(night, TAG)
    assert "matrix lr 0.06" in expected
    assert requests.get(f"{server}/api/digest", timeout=10).json() == {"tag": TAG,
                                                                       "text": expected}
    assert web.wait_js("const d = document.getElementById('digest'); "
                       "return d && d.textContent !== 'loading…' && d.textContent") == expected
    assert web.js("return getComputedStyle(document.getElementById('digest')).whiteSpace") == \
        "pre-wrap"

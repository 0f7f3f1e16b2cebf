"""A local, read-only web dashboard of a running (or finished) loop.

One page (dashboard.html, plain JS, no network) that polls a small JSON API every 2 seconds:

    GET /                     the page
    GET /api/results          rows, running best, y-range, threshold, summary (?since=<version>)
    GET /api/live             what each worker does now (.autoresearch/<tag>/live.json)
    GET /api/digest           the research journal's digest (what the agents read of the night)
    GET /api/diff/<id>        what the experiment changed in train.py, vs its parent
    GET /api/log/<id>         the tail of its run.log
    GET /api/sample/<id>      its sample_output.txt
    GET /api/metrics/<id>     its metrics.json

<id> is an experiment number or a commit prefix, looked up in results.tsv; the API never takes a
path, so nothing outside the run directories can be asked for. Every other method is a 405. On
127.0.0.1 the Host header must name localhost too, which keeps DNS-rebinding pages out.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import asdict
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from autoresearch.artifacts.checkpoints import COMMIT_PREFIX, WEIGHTS, run_dir_for
from autoresearch.errors import UserError
from autoresearch.execution.parse import log_tail
from autoresearch.ledger.state import STATE_DIR, read_live
from autoresearch.model import Row
from autoresearch.review.report import (
    baseline_row,
    best,
    events_log,
    experiment_numbers,
    improvements,
    noise_threshold,
    running_best,
    summarize,
    worker_labels,
    y_limits,
)
from autoresearch.review.views import (
    choose_tag,
    digest,
    loop_running,
    read_rows,
    state_repo,
    tags_by_start,
)
from autoresearch.target import listed, load_target, metric_beside
from autoresearch.verify.private import private_summary
from autoresearch.workspace.git import Git

PAGE = Path(__file__).with_name("dashboard.html")
LOG_TAIL_BYTES = 256 * 1024
LOG_TAIL_LINES = 400
LOG_TAIL_CHARS = 200_000  # a page can show far more of the log than an agent prompt
MAX_TEXT_BYTES = 512 * 1024  # diffs and samples larger than this are cut
IDENT = re.compile(r"^(\d{1,7}|[0-9a-f]{4,40})$")  # experiment number or commit prefix
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
RUN_FILES = {"log": "run.log", "sample": "sample_output.txt", "metrics": "metrics.json"}
BASELINE_NOTE = "baseline: the unmodified train.py (nothing to compare with)"


class Board:
    """Everything the page can ask for, read from disk on demand: the loop writes, we only read."""

    def __init__(self, repo: Path, results: Path, tag: str | None = None):
        self.repo, self.results, self.tag = repo.resolve(), results, tag
        self._rows: tuple[str, tuple[list[Row], str | None]] | None = None  # (version, rows)
        self._reported: set[str] = set()  # problems with results.tsv already warned about

    def version(self) -> str:
        """Changes whenever results.tsv does: the page re-renders only then."""
        try:
            st = self.results.stat()
        except OSError:
            return "none"
        return f"{st.st_mtime_ns}-{st.st_size}"

    def rows(self) -> tuple[list[Row], str | None]:
        """The selected tag's rows, parsed again only when results.tsv changed: the page asks
        for the live status every two seconds."""
        version = self.version()
        if self._rows is None or self._rows[0] != version:
            self._rows = (version, self._read_rows())
        return self._rows[1]

    def _read_rows(self) -> tuple[list[Row], str | None]:
        try:
            rows = read_rows(self.results, self._reported)
        except UserError:  # a half-written or foreign file: show nothing rather than die
            rows = []
        try:  # the dashboard command said which tag, and refused an unknown one, at its start
            tag = choose_tag(tags_by_start(state_repo(self.repo, self.results), rows), self.tag,
                             quiet=True)
        except UserError:
            return [], self.tag
        return [r for r in rows if tag is None or r.tag == tag], tag

    def current_tag(self, row_tag: str | None) -> str | None:
        """The tag rows() chose (--tag, else the newest), else the tag whose live.json changed
        last."""
        if self.tag or row_tag:
            return self.tag or row_tag
        lives = sorted((self.repo / STATE_DIR).glob("*/live.json"), key=lambda p: p.stat().st_mtime)
        return lives[-1].parent.name if lives else None

    # ---- the API

    def results_payload(self, since: str | None = None) -> dict:
        version = self.version()
        if since == version:
            return {"version": version, "unchanged": True}
        rows, tag = self.rows()
        tag = self.current_tag(tag)
        # rows hold the metric's loss; the page gets its own values (val_bpb: the value column)
        metric = metric_beside(self.results)
        shown = lambda loss: None if loss is None else metric.value(loss)  # noqa: E731
        out_rows = []
        keeps = {k.experiment: k for k in improvements(rows)}  # the same gain in every view
        for n, row, best_after, worker in zip(experiment_numbers(rows), rows, running_best(rows),
                                              worker_labels(rows), strict=True):
            run_dir = run_dir_for(self.repo, row)
            out_rows.append({
                "n": n, "commit": row.commit, "val_bpb": _finite(shown(row.val_bpb)),
                "memory_gb": _finite(row.memory_gb), "status": row.status,
                "description": row.description, "kind": row.kind, "timestamp": row.timestamp,
                "reason": row.reason, "agent": row.agent, "cost_usd": _finite(row.cost_usd),
                "worker": worker, "device": row.device,
                "best": shown(best_after), "run_dir": run_dir.name if run_dir else None,
                "gain": keeps[n].delta if n in keeps else None,
                "evidence": keeps[n].evidence if n in keeps else "",
                "has_sample": bool(run_dir and (run_dir / RUN_FILES["sample"]).is_file()),
                "has_model": bool(run_dir and (run_dir / WEIGHTS).is_file()),
                "private_bpb": _finite(row.private_bpb),
            })
        threshold = noise_threshold(self.repo, tag, rows)
        head = best(rows)
        summary = summarize(rows, events=events_log(state_repo(self.repo, self.results), tag),
                            metric=metric) if rows else None
        limits = y_limits(rows, threshold)
        return {
            "version": version, "tag": tag, "results": str(self.results), "rows": out_rows,
            "metric": {"name": metric.name, "direction": metric.direction,
                       "label": metric.label},
            "threshold": threshold,
            "y_limits": sorted(map(metric.value, limits)) if limits else None,
            "best": dict(asdict(head), value=metric.value(head.value), label=head.label(metric))
            if head else None,
            "summary": _json_safe(asdict(summary)) if summary else None,
            "private": _json_safe(asdict(private_summary(
                rows, summary.improvement if summary else None))),
        }

    def live_payload(self) -> dict:
        _, tag = self.rows()
        tag = self.current_tag(tag)
        live = read_live(self.repo, tag) if tag else {}
        if live.get("updated_at"):
            try:
                updated = datetime.fromisoformat(live["updated_at"])
                live["age_s"] = (datetime.now(timezone.utc) - updated).total_seconds()
            except (TypeError, ValueError):
                pass
        return {"tag": tag, "live": live, "running": loop_running(live)}

    def digest_payload(self) -> dict:
        _, tag = self.rows()
        tag = self.current_tag(tag)
        return {"tag": tag, "text": digest(self.repo, tag) if tag else None}

    def find(self, ident: str) -> tuple[int, Row, list[Row]] | None:
        """(experiment number, row, all rows) for an id the ledger knows, else None."""
        if not IDENT.match(ident):
            return None
        rows, _ = self.rows()
        numbers = experiment_numbers(rows)
        for n, row in zip(numbers, rows, strict=True):
            if ident.isdigit() and int(ident) == n:
                return n, row, rows
        for n, row in zip(numbers, rows, strict=True):
            if COMMIT_PREFIX.match(ident) and row.commit.startswith(ident):
                return n, row, rows
        return None

    def run_file(self, ident: str, kind: str) -> dict | None:
        found = self.find(ident)
        if found is None:
            return None
        n, row, _ = found
        run_dir = run_dir_for(self.repo, row)
        text = _read_inside(run_dir, RUN_FILES[kind]) if run_dir else None
        if kind == "log" and text is not None:
            text = log_tail(text, LOG_TAIL_LINES, max_chars=LOG_TAIL_CHARS)
        if kind == "metrics" and text is not None:
            try:
                return {"n": n, "metrics": json.loads(text)}
            except ValueError:
                return {"n": n, "metrics": None, "text": text}
        return {"n": n, "text": text, "run_dir": run_dir.name if run_dir else None}

    def diff(self, ident: str) -> dict | None:
        """`git diff <commit>^ <commit> -- train.py` (a target's editable files); without git
        objects (another tool's ledger, a missing parent) the run dir's copies against its
        parent run's. The
        baseline's runs have nothing to compare with: a note says so."""
        found = self.find(ident)
        if found is None:
            return None
        n, row, rows = found
        base = baseline_row(rows)
        if row.kind in ("baseline", "noise") or (base is not None and row.commit == base.commit):
            return {"n": n, "source": None, "text": None, "note": BASELINE_NOTE}
        edited = load_target(self.repo).editable  # train.py, or a target's own files
        git = Git(self.repo, edited)
        commit = git.resolve(row.commit) if COMMIT_PREFIX.match(row.commit) else None
        parent = git.parent(commit) if commit else None
        if commit and parent:
            try:
                text = git.diff(parent, commit)
                return {"n": n, "source": f"git diff {parent[:7]} {commit[:7]}", "text": text}
            except UserError:
                pass
        parent_row = _parent_row(row, rows)
        mine = run_dir_for(self.repo, row)
        theirs = run_dir_for(self.repo, parent_row) if parent_row else None
        lines: list[str] = []
        for name in edited:
            new = _read_inside(mine, name) if mine else None
            old = _read_inside(theirs, name) if theirs else None
            if new is None or old is None:
                return {"n": n, "source": None, "text": None,
                        "note": f"no commit and no {listed(edited)} copies to compare"}
            lines += difflib.unified_diff(old.splitlines(keepends=True),
                                          new.splitlines(keepends=True),
                                          f"a/{theirs.name}/{name}", f"b/{mine.name}/{name}")
        return {"n": n, "source": f"{theirs.name} → {mine.name}", "text": "".join(lines)}


def _parent_row(row: Row, rows: list[Row]) -> Row | None:
    """A run of the code `row` was proposed on: its `parent` column's commit, else (another
    tool's file) the best before it."""
    head = best(rows[:rows.index(row)])
    commit = row.parent or (head.commit if head else None)
    return next((r for r in rows if r.commit == commit and r is not row), None)


def _read_inside(run_dir: Path, name: str) -> str | None:
    """A run file's text (its tail for big logs), refusing anything that escapes the run dir."""
    path = run_dir / name
    if not path.is_file() or path.resolve().parent != run_dir.resolve():
        return None
    limit = LOG_TAIL_BYTES if name == RUN_FILES["log"] else MAX_TEXT_BYTES
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - limit))
        return f.read().decode("utf-8", errors="replace")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _json_safe(value):
    """JSON.parse rejects NaN and Infinity: send null instead."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


class Handler(BaseHTTPRequestHandler):
    board: Board  # set on the subclass made by make_server
    page: bytes
    loopback_only: bool
    server_version = "autoresearch-dashboard"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.loopback_only and _host_name(self.headers.get("Host", "")) not in LOOPBACK:
            return self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain")
        url = urlsplit(self.path)
        parts = url.path.split("/")
        if url.path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, self.page, "text/html; charset=utf-8")
        if url.path == "/api/results":
            since = parse_qs(url.query).get("since", [None])[0]
            return self._json(self.board.results_payload(since))
        if url.path == "/api/live":
            return self._json(self.board.live_payload())
        if url.path == "/api/digest":
            return self._json(self.board.digest_payload())
        if len(parts) == 4 and parts[:2] == ["", "api"] and IDENT.match(parts[3]):
            kind, ident = parts[2], parts[3]
            payload = None
            if kind == "diff":
                payload = self.board.diff(ident)
            elif kind in RUN_FILES:
                payload = self.board.run_file(ident, kind)
            if payload is not None:
                return self._json(payload)
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def __getattr__(self, name: str):
        # Any other method (POST, PUT, DELETE, HEAD, OPTIONS, made-up ones): 405, not 501.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET only\n", "text/plain",
                   {"Allow": "GET"})

    def _json(self, payload: dict) -> None:
        body = json.dumps(payload, allow_nan=False).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy",
                         "default-src 'none'; script-src 'unsafe-inline'; "
                         "style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the page polls every 2 s: a line per request would drown the terminal


def _host_name(host: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:8765' -> '::1'."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def make_server(board: Board, host: str, port: int) -> ThreadingHTTPServer:
    """A ready (bound, not yet serving) dashboard server; port 0 picks a free one."""
    handler = type("BoardHandler", (Handler,), {
        "board": board, "page": PAGE.read_bytes(), "loopback_only": host in LOOPBACK})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}): "
                        "pick another port with --port") from None
    server.daemon_threads = True
    return server

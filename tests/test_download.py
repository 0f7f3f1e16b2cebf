"""download_shards against a real HTTP server on 127.0.0.1 that serves small parquet shards.

The server honours Range requests (206 + Content-Range), records every request it sees, and can be
told to misbehave per file: answer 500 or 429 first, drop the connection mid-body, ignore Range.
"""

import random
import socket
import string
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoresearch.download import DownloadError, download_shards, is_valid_shard

NAMES = [f"shard_{i:05d}.parquet" for i in range(4)]
FAST = {"backoff": 0.01, "timeout": 5.0, "show_progress": False}
HANG_GUARD_SECONDS = 300  # only for a regression that would otherwise hang for an hour


def make_shard(seed: int) -> bytes:
    """~200 KB parquet file with a `text` column; random letters so it does not compress away."""
    rng = random.Random(seed)
    rows = ["".join(rng.choices(string.ascii_letters + " ", k=700)) for _ in range(300)]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": rows}), sink, compression="none")
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="module")
def shards() -> dict[str, bytes]:
    return {name: make_shard(i) for i, name in enumerate(NAMES)}


class Handler(BaseHTTPRequestHandler):
    server: "ShardServer"

    def do_GET(self) -> None:
        srv = self.server
        name = self.path.rsplit("/", 1)[-1]
        with srv.lock:
            srv.log.append((name, self.headers.get("Range")))
            fault = srv.faults[name].pop(0) if srv.faults.get(name) else None
            srv.active += 1
            srv.max_active = max(srv.max_active, srv.active)
        try:
            time.sleep(srv.delay)
            self.respond(name, fault)
        finally:
            with srv.lock:
                srv.active -= 1

    def respond(self, name: str, fault: str | None) -> None:
        srv = self.server
        if name not in srv.files:
            return self.send_error(404)
        if fault in ("500", "429"):
            self.send_response(int(fault))
            if fault == "429":
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        data, start = srv.files[name], 0
        byte_range = self.headers.get("Range")
        if byte_range and not srv.ignore_range:
            start = int(byte_range.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "drop":  # promise the whole body, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


class ShardServer(ThreadingHTTPServer):
    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files
        self.log: list[tuple[str, str | None]] = []
        self.faults: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.ignore_range = False
        self.delay = 0.0
        self.active = self.max_active = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/datasets/x/resolve/main"

    def requests_for(self, name: str) -> list[str | None]:
        return [rng for n, rng in self.log if n == name]


@pytest.fixture
def server(shards):
    srv = ShardServer(shards)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def assert_identical(data_dir: Path, shards: dict[str, bytes], names: list[str]) -> None:
    for name in names:
        assert (data_dir / name).read_bytes() == shards[name]
    assert not list(data_dir.glob("*.part"))


def test_downloads_shards_in_parallel(server, shards, tmp_path):
    server.delay = 0.2  # keep requests open long enough to overlap
    paths = download_shards(server.url, NAMES, tmp_path, workers=4, backoff=0.01, timeout=5.0)
    assert paths == [tmp_path / name for name in NAMES]
    assert_identical(tmp_path, shards, NAMES)
    assert server.max_active >= 2
    assert sorted(server.log) == sorted((name, None) for name in NAMES)


@pytest.mark.parametrize(("fault", "min_seconds"), [("500", 0.0), ("429", 0.9)])
def test_server_error_is_retried(server, shards, tmp_path, fault, min_seconds):
    server.faults[NAMES[1]] = [fault]
    started = time.monotonic()
    download_shards(server.url, NAMES[:2], tmp_path, **FAST)
    assert time.monotonic() - started >= min_seconds  # 429 carries Retry-After: 1, honoured
    assert_identical(tmp_path, shards, NAMES[:2])
    assert server.requests_for(NAMES[1]) == [None, None]


def test_partial_file_is_resumed_with_range(server, shards, tmp_path):
    name = NAMES[0]
    (tmp_path / f"{name}.part").write_bytes(shards[name][:50_000])
    download_shards(server.url, [name], tmp_path, **FAST)
    assert server.requests_for(name) == ["bytes=50000-"]
    assert_identical(tmp_path, shards, [name])


def test_server_ignoring_range_still_gives_correct_file(server, shards, tmp_path):
    name = NAMES[0]
    server.ignore_range = True
    (tmp_path / f"{name}.part").write_bytes(shards[name][:50_000])
    download_shards(server.url, [name], tmp_path, **FAST)
    assert server.requests_for(name) == ["bytes=50000-"]  # asked, got 200, started over
    assert_identical(tmp_path, shards, [name])


def test_part_that_is_not_a_prefix_is_discarded(server, shards, tmp_path):
    name = NAMES[0]
    (tmp_path / f"{name}.part").write_bytes(b"garbage" * 1000)
    download_shards(server.url, [name], tmp_path, **FAST)
    assert server.requests_for(name) == ["bytes=7000-", None]  # invalid result, redone fresh
    assert_identical(tmp_path, shards, [name])


def test_truncated_final_file_is_redone(server, shards, tmp_path):
    (tmp_path / NAMES[0]).write_bytes(shards[NAMES[0]][:100_000])
    (tmp_path / NAMES[1]).write_bytes(shards[NAMES[1]])
    download_shards(server.url, NAMES[:2], tmp_path, **FAST)
    assert server.log == [(NAMES[0], None)]
    assert_identical(tmp_path, shards, NAMES[:2])


def test_dropped_connection_is_resumed(server, shards, tmp_path):
    name = NAMES[2]
    server.faults[name] = ["drop"]
    download_shards(server.url, [name], tmp_path, **FAST)
    first, second = server.requests_for(name)
    # resumed from what had arrived (less the chunk being read when the connection dropped)
    assert first is None and second.startswith("bytes=")
    assert 0 < int(second.removeprefix("bytes=").rstrip("-")) <= len(shards[name]) // 2
    assert_identical(tmp_path, shards, [name])
    assert is_valid_shard(tmp_path / name)


def test_complete_files_are_not_requested_again(server, shards, tmp_path):
    download_shards(server.url, NAMES, tmp_path, **FAST)
    server.log.clear()
    paths = download_shards(server.url, NAMES, tmp_path, **FAST)
    assert server.log == []
    assert paths == [tmp_path / name for name in NAMES]


def test_offline_fails_fast_with_one_line(tmp_path):
    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    names = [f"shard_{i:05d}.parquet" for i in range(20)]
    # A back-off of an hour: only the early abort (the host is unreachable, stop every worker)
    # lets the call return at all. The guard is no speed bound, it turns a hang into a failure.
    outcome: list[object] = []

    def download() -> None:
        try:
            outcome.append(download_shards(f"http://127.0.0.1:{port}/x", names, tmp_path,
                                           backoff=3600.0, show_progress=False))
        except Exception as e:  # checked below, in the test's thread
            outcome.append(e)

    worker = threading.Thread(target=download, daemon=True)
    worker.start()
    worker.join(HANG_GUARD_SECONDS)
    assert outcome, "the download backed off instead of giving up on an unreachable host"
    assert isinstance(outcome[0], DownloadError), outcome[0]
    message = str(outcome[0])
    assert "\n" not in message
    assert f"cannot reach 127.0.0.1:{port} (connection refused)" in message
    assert "uv run prepare.py --demo" in message and "--source" in message


def test_missing_file_fails_at_once_naming_it(server, shards, tmp_path):
    missing = "shard_09999.parquet"
    with pytest.raises(DownloadError) as info:
        download_shards(server.url, [NAMES[0], missing], tmp_path, **FAST)
    message = str(info.value)
    assert missing in message and "404" in message and "\n" not in message
    assert server.requests_for(missing) == [None]  # no retries for a 404
    assert_identical(tmp_path, shards, [NAMES[0]])  # the other shard still arrived


def test_persistent_failure_says_rerun_resumes(server, shards, tmp_path):
    server.faults[NAMES[1]] = ["500"] * 3
    with pytest.raises(DownloadError, match=r"1 of 2 shards failed.*re-run to resume"):
        download_shards(server.url, NAMES[:2], tmp_path, max_attempts=3, **FAST)
    assert len(server.requests_for(NAMES[1])) == 3
    download_shards(server.url, NAMES[:2], tmp_path, **FAST)  # the re-run finishes the job
    assert_identical(tmp_path, shards, NAMES[:2])


def test_is_valid_shard(shards, tmp_path):
    good, truncated, no_text = tmp_path / "good", tmp_path / "truncated", tmp_path / "no_text"
    good.write_bytes(shards[NAMES[0]])
    truncated.write_bytes(shards[NAMES[0]][:-10])
    pq.write_table(pa.table({"body": ["a", "b"]}), no_text)
    assert is_valid_shard(good)
    assert not is_valid_shard(truncated)
    assert not is_valid_shard(no_text)
    assert not is_valid_shard(tmp_path / "absent")

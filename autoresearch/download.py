"""Download the dataset's parquet shards: in parallel, resumable, validated before they count.

Each shard is streamed to `<name>.part` (continued with an HTTP Range request when an earlier run
left one behind), checked with pyarrow, and only then renamed to its final name. So a file with a
final name is always a complete shard, and re-running after any failure or Ctrl-C resumes where
it stopped. Offline we fail fast with one line that says how to use local data instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import requests
from rich import filesize
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from autoresearch.errors import UserError
from autoresearch.retry_after import retry_after_seconds

# Streaming read size. A dropped connection loses the chunk being read, so keep it modest.
CHUNK_BYTES = 1 << 16
MAX_RETRY_AFTER = 60.0  # honour a server's Retry-After up to this; beyond it use our back-off
PARQUET_MAGIC = b"PAR1"  # first and last 4 bytes of every parquet file
LOCAL_HINT = ("prepare offline: uv run prepare.py --demo (the small corpus in this repository) "
              "or --source /path/to/parquet-or-text-dir")


class DownloadError(UserError):
    """The download failed; the message is one line saying what failed and what to do."""


class _Retry(Exception):
    """A transient failure: connection error, timeout, 5xx, 429, short or invalid body."""

    def __init__(self, reason: str, *, retry_after: float | None = None, connect: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.connect = connect  # failed before any HTTP response: maybe we are offline


class _Fail(Exception):
    """A failure that retrying cannot fix (404, other 4xx), or retries exhausted."""


class _Aborted(Exception):
    """Another worker concluded the host is unreachable, or the user pressed Ctrl-C."""


def is_valid_shard(path: Path) -> bool:
    """Cheap completeness check: parquet magic at both ends, footer readable, a `text` column.

    A truncated download loses the footer, which lives at the end of the file, so this catches
    every interrupted transfer without reading the data pages.
    """
    try:
        with open(path, "rb") as f:
            if f.read(4) != PARQUET_MAGIC:
                return False
        return "text" in pq.ParquetFile(path).schema_arrow.names
    except Exception:  # pyarrow raises ArrowInvalid, OSError, ... on any malformed file
        return False


class _Run:
    """State shared by the worker threads of one download_shards call."""

    def __init__(self, connect_failure_limit: int, progress: Progress | None, shards: int):
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.reached = False  # set once any HTTP response arrived: the host is online
        self.connect_failures = 0
        self.connect_failure_limit = connect_failure_limit
        self.offline_reason: str | None = None
        self.progress = progress
        self.task = progress.add_task("downloading", total=shards, size="") if progress else None
        self.bytes = 0
        self.started = time.monotonic()

    def connect_failed(self, reason: str) -> None:
        # When the first attempt of every worker fails before getting any response, the host is
        # unreachable: stop everyone instead of spending max_attempts back-offs on every shard.
        with self.lock:
            self.connect_failures += 1
            if not self.reached and self.connect_failures >= self.connect_failure_limit:
                self.offline_reason = reason
                self.abort.set()

    def add_bytes(self, n: int) -> None:
        with self.lock:
            self.bytes += n
            total = self.bytes
        if self.progress:
            rate = total / max(time.monotonic() - self.started, 1e-3)
            size = f"{filesize.decimal(total)} ({filesize.decimal(int(rate))}/s)"
            self.progress.update(self.task, size=size)

    def shard_done(self) -> None:
        if self.progress:
            self.progress.advance(self.task)


def _describe(exc: Exception) -> str:
    """A short human reason for a connection-level exception (requests' texts are walls)."""
    text = str(exc)
    if isinstance(exc, requests.Timeout) or "timed out" in text:
        return "timed out"
    if "refused" in text:
        return "connection refused"
    if any(s in text for s in ("resolve", "Name or service", "getaddrinfo", "nodename")):
        return "DNS lookup failed"
    if "reset" in text or "aborted" in text:
        return "connection reset"
    return "connection failed"


def _stream(url: str, part: Path, run: _Run, timeout: float) -> None:
    """One attempt: fetch url into `part`, appending when the server honours our Range."""
    name = part.name.removesuffix(".part")
    offset = part.stat().st_size if part.exists() else 0
    # identity: parquet is already compressed, and byte counts must match Content-Length
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise _Retry(_describe(exc), connect=True) from exc
    with response:
        run.reached = True
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", retry_after=retry_after_seconds(response))
        if status == 404:
            raise _Fail(f"{name}: not found (HTTP 404 at {url})")
        if status not in (200, 206, 416):
            raise _Fail(f"{name}: HTTP {status} from {url}")
        append = status == 206 and response.headers.get("Content-Range", "").startswith(
            f"bytes {offset}-"
        )
        if status != 200 and not append:  # 416 or an odd 206: our .part is useless, start over
            part.unlink(missing_ok=True)
            raise _Retry(f"could not resume (HTTP {status})")
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            with open(part, "ab" if append else "wb") as f:
                for chunk in response.iter_content(CHUNK_BYTES):
                    if run.abort.is_set():
                        raise _Aborted
                    f.write(chunk)
                    received += len(chunk)
                    run.add_bytes(len(chunk))
        except requests.RequestException as exc:
            raise _Retry(f"connection lost mid-download ({_describe(exc)})") from exc
        if expected is not None and received != int(expected):
            raise _Retry(f"connection closed after {received} of {expected} bytes")


def _download_one(
    url: str, final: Path, run: _Run, max_attempts: int, timeout: float, backoff: float
) -> Path:
    """Fetch one shard with retries; the final name appears only once the file is valid."""
    part = final.with_name(final.name + ".part")
    reason = ""
    for attempt in range(1, max_attempts + 1):
        if run.abort.is_set():
            raise _Aborted
        try:
            _stream(url, part, run, timeout)
            if is_valid_shard(part):
                os.replace(part, final)  # atomic: readers never see a half-written shard
                return final
            part.unlink()  # complete but not a shard (e.g. stale .part of another file)
            raise _Retry("downloaded file is not a valid parquet shard")
        except _Retry as exc:
            reason = exc.reason
            if exc.connect:
                run.connect_failed(reason)
            delay = backoff * 2 ** (attempt - 1)
            if exc.retry_after is not None and exc.retry_after <= MAX_RETRY_AFTER:
                delay = max(delay, exc.retry_after)
        if attempt < max_attempts:
            run.abort.wait(delay)  # an abort wakes us at once
    raise _Fail(f"{final.name}: {reason}, gave up after {max_attempts} attempts")


def _is_complete(path: Path) -> bool:
    """True for a valid shard; an invalid file under the final name is removed so it is redone."""
    if not path.exists():
        return False
    if is_valid_shard(path):
        return True
    path.unlink()  # e.g. truncated by an older tool that wrote straight to the final name
    return False


def download_shards(
    base_url: str,
    filenames: list[str],
    data_dir: Path,
    *,
    workers: int = 8,
    max_attempts: int = 5,
    timeout: float = 30.0,
    backoff: float = 2.0,
    show_progress: bool = True,
) -> list[Path]:
    """Download `base_url/<name>` for each name into data_dir, skipping shards already there.

    Returns the final paths in the order of `filenames`. Raises DownloadError (one line) when
    the host is unreachable or some shards still fail after `max_attempts` tries each.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    finals = [data_dir / name for name in filenames]
    pending = [path for path in finals if not _is_complete(path)]
    if not pending:
        return finals

    progress = None
    if show_progress:
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("shards  {task.fields[size]}"), TimeElapsedColumn(),
        )
    run = _Run(min(workers, len(pending)), progress, len(pending))
    fetch = partial(
        _download_one, run=run, max_attempts=max_attempts, timeout=timeout, backoff=backoff
    )
    base = base_url.rstrip("/")
    failures: list[str] = []
    with progress or contextlib.nullcontext(), ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(fetch, f"{base}/{path.name}", path): path for path in pending}
        try:
            for future in as_completed(futures):
                try:
                    future.result()
                    run.shard_done()
                except _Fail as exc:
                    failures.append(str(exc))
                except _Aborted:
                    pass
                except OSError as exc:  # e.g. disk full: report it, keep the other shards
                    failures.append(f"{futures[future].name}: {exc.strerror or exc}")
        except KeyboardInterrupt:
            run.abort.set()  # workers stop at their next chunk; .part files stay for resuming
            raise

    if run.offline_reason:
        host = urlsplit(base_url).netloc or base_url
        raise DownloadError(
            f"cannot reach {host} ({run.offline_reason}); check your network, or {LOCAL_HINT}"
        )
    if failures:
        raise DownloadError(
            f"{len(failures)} of {len(pending)} shards failed to download ({failures[0]}); "
            "re-run to resume, finished shards are kept"
        )
    return finals

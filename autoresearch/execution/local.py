"""Run train.py once: its own process group, a log file, a hard timeout, and no orphans.

train.py may start workers (dataloaders, compile threads, a stray subprocess an agent added), so
it runs in a new session and the whole process group is killed on timeout or abort: SIGTERM,
then SIGKILL after a grace period. Every process of a run carries the env var
AUTORESEARCH_CHECKPOINT_DIR=<run dir>, which is how a restarted loop finds and kills a trainer
left running by a loop that was itself killed (kill -9 of the loop does not reach a new session).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from autoresearch.execution.parse import Progress, last_progress

CHECKPOINT_ENV = "AUTORESEARCH_CHECKPOINT_DIR"
GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL: time for train.py to release the GPU
POLL_SECONDS = 0.5
TAIL_BYTES = 16384  # how much of the log end is read to find the latest progress line
PROC = Path("/proc")


@dataclass
class RunResult:
    returncode: int | None  # None when the run was killed (timeout or abort)
    timed_out: bool
    aborted: bool
    seconds: float


def default_train_cmd() -> list[str]:
    return [sys.executable, "train.py"]


def bytecode_warning(env: Mapping[str, str] = os.environ) -> str | None:
    """A note when Python may not cache bytecode (many container images set
    PYTHONDONTWRITEBYTECODE): every run then re-compiles the sources of PyTorch's compiler,
    which added ~8 s to each train.py start-up on an H100 host (BENCHMARKS.md)."""
    if not env.get("PYTHONDONTWRITEBYTECODE"):
        return None
    return ("note: PYTHONDONTWRITEBYTECODE is set, so every run re-compiles PyTorch's Python "
            "sources (~8 s per run); unset it (and set PYTHONPYCACHEPREFIX=<a writable folder> "
            "if site-packages is read-only)")


def run_training(
    cmd: list[str],
    repo: Path,
    run_dir: Path,
    timeout: float,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_abort: Callable[[], bool] | None = None,
    poll: float = POLL_SECONDS,
    grace: float = GRACE_SECONDS,
) -> RunResult:
    """Run `cmd` in `repo`, output to run_dir/run.log; kill its whole group on timeout/abort."""
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "run.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{CHECKPOINT_ENV: str(run_dir)})
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=repo, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    if on_start:
        on_start(proc.pid)
    timed_out = aborted = False
    seen = None
    try:
        while True:
            progress = last_progress(_read_tail(log_path))
            if on_progress and progress and progress != seen:
                seen = progress
                on_progress(progress)
            if proc.poll() is not None:
                break
            if should_abort and should_abort():
                aborted = True
            elif time.monotonic() - start > timeout:
                timed_out = True
            if timed_out or aborted:
                kill_group(proc.pid, grace)
                proc.wait()
                break
            try:
                proc.wait(timeout=poll)  # returns at once when the run ends
            except subprocess.TimeoutExpired:
                pass
    except BaseException:  # a failing callback must not leave the run orphaned in its session
        kill_group(proc.pid, grace)
        proc.wait()
        raise
    # The leader may exit while children it started live on: those would hold the GPU forever.
    kill_group(proc.pid, grace=1.0)
    returncode = None if timed_out or aborted else proc.returncode
    return RunResult(returncode, timed_out, aborted, time.monotonic() - start)


def kill_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the process group, SIGKILL whatever is left after `grace` seconds, then wait."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """True while some non-zombie process is in the group (zombies hold no resources)."""
    if not PROC.is_dir():  # not Linux: no zombie filter, ask the kernel directly
        try:
            os.killpg(pgid, 0)
            return True
        except OSError:
            return False
    return any(_stat(pid)[1] == pgid for pid in _live_pids())


def kill_stale_runs(run_dir: Path) -> list[int]:
    """Kill the process groups of any process still running for run_dir (after a loop crash)."""
    return kill_marked(CHECKPOINT_ENV, str(run_dir.resolve()))


def kill_marked(key: str, value: str) -> list[int]:
    """Kill the process group of every process whose environment has key=value.

    Never our own group: the marked processes live in sessions of their own.
    """
    marker = f"{key}={value}".encode()
    groups = set()
    for pid in _live_pids():
        try:
            environ = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            groups.add(_stat(pid)[1])
    groups.discard(os.getpgrp())
    for pgid in groups:
        kill_group(pgid)
    return sorted(groups)


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    if not PROC.is_dir():
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    return _stat(pid)[0] not in ("", "Z", "X")


def _live_pids() -> list[int]:
    """Pids of processes that are not zombies, from /proc (Linux)."""
    pids = []
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if entry.name.isdigit():
            state, _ = _stat(int(entry.name))
            if state and state not in "ZX":
                pids.append(int(entry.name))
    return pids


def _stat(pid: int) -> tuple[str, int]:
    """(state, process group) of a pid from /proc/<pid>/stat, ("", -1) if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return "", -1
    fields = text.rsplit(")", 1)[1].split()  # the command name may contain spaces and parens
    return fields[0], int(fields[2])


def _read_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""

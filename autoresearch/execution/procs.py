"""Processes the loop starts, and the promise that none of them outlives its job.

Training runs and CLI agents run under the reaper (`supervised(cmd)`): a small parent process
that is the Linux "child subreaper" of everything below it, so that a descendant which leaves
its session (setsid, a double fork, a daemon) is re-parented to the reaper instead of init. When
the command exits, or the reaper is told to stop, it kills every descendant it still has. Each
run also carries a marker in its environment, which is how a loop restarted after kill -9 finds
(and kills) a job left running by the loop that died.

Everything here reads /proc (Linux). Elsewhere the reaper degrades to killing the process group.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from autoresearch.names import GRACE_SECONDS

PROC = Path("/proc")
REAPER_MODULE = "autoresearch.execution.reaper"


def supervised(cmd: list[str], grace: float = GRACE_SECONDS,
               parent: int | None = None) -> list[str]:
    """`cmd` wrapped in the reaper: its exit status is cmd's, and no descendant survives it.
    parent: the reaper also ends everything when that process (its starter) dies."""
    follow = ["--parent", str(parent)] if parent is not None else []
    return [sys.executable, "-m", REAPER_MODULE, "--grace", f"{grace:g}", *follow, "--", *cmd]


def reaper_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with this package importable, wherever the loop was started from."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(env, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)))


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
    return any(stat(pid)[2] == pgid for pid in live_pids())


def kill_marked(key: str, value: str, grace: float = GRACE_SECONDS) -> list[int]:
    """Kill the process group of every process whose environment has key=value.

    Never our own group: the marked processes live in sessions of their own.
    """
    marker = f"{key}={value}".encode()
    groups = set()
    for pid in live_pids():
        try:
            environ = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            groups.add(stat(pid)[2])
    groups.discard(os.getpgrp())
    groups.discard(-1)
    for pgid in groups:
        kill_group(pgid, grace)
    return sorted(groups)


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    if not PROC.is_dir():
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    return stat(pid)[0] not in ("", "Z", "X")


def descendants(root: int) -> list[int]:
    """Live (non-zombie) processes below `root`, parents before their children."""
    children: dict[int, list[int]] = {}
    for pid in live_pids():
        children.setdefault(stat(pid)[1], []).append(pid)
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue += children.get(pid, [])
    return found


def live_pids() -> list[int]:
    """Pids of processes that are not zombies, from /proc (Linux)."""
    pids = []
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if entry.name.isdigit():
            state = stat(int(entry.name))[0]
            if state and state not in "ZX":
                pids.append(int(entry.name))
    return pids


def stat(pid: int) -> tuple[str, int, int]:
    """(state, parent pid, process group) of a pid from /proc/<pid>/stat; ("", -1, -1) if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return "", -1, -1
    fields = text.rsplit(")", 1)[1].split()  # the command name may contain spaces and parens
    return fields[0], int(fields[1]), int(fields[2])

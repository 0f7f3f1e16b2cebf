"""Bubblewrap views for the processes that run agent code.

A training run sees the machine as it is (same paths, same files, GPUs), except that the
directories it must not read are empty. A verification, which must read the private split,
sees the machine read-only, with a private /tmp, no network, no shared memory with the host and
its own process tree, so what it reads cannot be written anywhere that outlives it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

BWRAP = "bwrap"
PROBE_TIMEOUT = 30.0
SCRATCH = "/dev/shm"  # the sealed view's only writable directory, its own empty tmpfs

# Both views: GPUs and other devices as they are, an own process tree (so /proc does not lead to
# the loop's processes and their view of the private directory), killed with its parent.
_COMMON = ["--dev-bind", "/dev", "/dev", "--unshare-pid", "--proc", "/proc", "--die-with-parent"]


def run_view(cmd: list[str], hidden: list[Path]) -> list[str]:
    """`cmd` run with the whole file system as it is, and each existing `hidden` directory
    replaced by an empty one."""
    empty = [a for d in hidden if d.is_dir() for a in ("--tmpfs", str(d.resolve()))]
    return [BWRAP, "--dev-bind", "/", "/", *_COMMON, *empty, "--", *cmd]


def sealed_view(cmd: list[str]) -> list[str]:
    """`cmd` run with the whole file system read-only, no network and no System V IPC; its only
    writable place is an empty private /dev/shm (its TMPDIR), so it can only answer on its
    stdout and stderr. (/tmp stays read-only rather than emptied: the repo may live there.)"""
    return [BWRAP, "--ro-bind", "/", "/", *_COMMON, "--tmpfs", SCRATCH, "--setenv", "TMPDIR",
            SCRATCH, "--unshare-net", "--unshare-ipc", "--new-session", "--", *cmd]


@functools.cache
def unavailable() -> str | None:
    """Why bubblewrap cannot isolate processes here (one line), or None when it can. Probed
    once: both views must start a process."""
    exe = shutil.which(BWRAP)
    if exe is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    for view in (run_view(["true"], []), sealed_view(["true"])):
        try:
            proc = subprocess.run(view, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap does not start here ({e})"
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            return f"bwrap does not work here ({detail}; user namespaces may be disabled)"
    return None

"""python -m autoresearch.execution.reaper [--grace S] [--parent PID] -- CMD...

Runs CMD and exits with its status; when CMD exits, or the reaper gets SIGTERM/SIGINT/SIGHUP,
every process CMD started is killed too, including those that left its session or process group:
the reaper is their "child subreaper" (Linux prctl), so orphans are re-parented to it, not to init.

--parent PID: also stop when PID (the process that started the reaper) dies, e.g. a Ray worker
killed with its node. Used where the starter cannot be relied on to clean up after itself.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys

from autoresearch.execution.procs import descendants, escalate

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE = 1.0  # SIGTERM to SIGKILL for what is left after CMD itself exited
KILL_ROUNDS = 20  # SIGKILL passes: a process may fork while its siblings are being killed


class Stop(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def reap() -> None:
    """Collect exited children (orphans re-parented to us are our children now)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_tree(grace: float) -> None:
    """SIGTERM every descendant, SIGKILL what is left after `grace` seconds, until none is left."""
    me = os.getpid()

    def send(sig: int) -> bool:
        pids = descendants(me)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        return bool(pids)

    def gone() -> bool:
        reap()
        return not descendants(me)

    escalate(send, gone, grace, kills=KILL_ROUNDS, kill_wait=0.5, poll=0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reaper")
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given")

    def on_signal(signum: int, frame: object) -> None:
        raise Stop(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    if args.parent is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != args.parent:  # it died before the line above took effect
            return 128 + signal.SIGTERM
    code, grace = 128 + signal.SIGTERM, args.grace
    try:
        child = subprocess.Popen(cmd)
        code = child.wait()
        grace = LEFTOVER_GRACE
    except Stop as stop:
        code = 128 + stop.signum
    except OSError as e:
        print(f"error: cannot run {cmd[0]}: {e}", file=sys.stderr)
        code, grace = 127, LEFTOVER_GRACE
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        end_tree(grace)
    return code if code >= 0 else 128 - code  # killed by signal s: Popen reports -s


if __name__ == "__main__":
    sys.exit(main())

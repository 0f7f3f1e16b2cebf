"""Why the loop winds down, shared by its threads, and the condition they wait on.

One object holds the flags every thread reads (closing, stopping, aborting, the first error) and
the condition variable that wakes them (the coordinator guards its state with the same lock, so
new work and a stop wake a waiting worker alike). The signal handlers only set these flags:
printing from a handler can deadlock.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.ledger.state import stop_requested

# SIGINTs this close together are one Ctrl-C: a signal sent to the whole process group (a
# supervisor, CI) reaches the loop directly and again through a parent that forwards it to its
# child (`uv run` does), a moment apart; a second Ctrl-C meant as one comes later
SAME_SIGINT_S = 1.0


class Stops:
    """The loop's stop flags and wake-up condition; `why()` says why it should stop, or None."""

    def __init__(self, repo: Path, tag: str, hours: float | None):
        self.repo, self.tag, self.hours = repo, tag, hours
        self.deadline = time.monotonic() + hours * 3600 if hours else None
        self.stopping = ""  # why the loop is winding down: no new runs start
        self.closing = False  # threads: leave as soon as what is under way is done
        self.aborting = False  # second Ctrl-C / SIGTERM / stop --now: kill the runs now
        self.error: BaseException | None = None  # raised in a worker's thread
        self.changed = threading.Condition(threading.RLock())  # notified on new work or a stop

    def why(self) -> str | None:
        """Why the loop should stop now (an error, an abort, the stop file, --hours), or None."""
        if self.error is not None:  # its reason now: the runs under way may take minutes
            return str(self.error) if isinstance(self.error, UserError) else "error"
        if self.aborting:
            return "aborted"
        if stop_requested(self.repo, self.tag) == "now":
            self.aborting = True
            return "stop --now requested"
        if stop_requested(self.repo, self.tag):
            return "stop requested"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return f"reached --hours {self.hours:g}"
        return None

    def should_abort(self) -> bool:
        return self.aborting or stop_requested(self.repo, self.tag) == "now"

    def time_left(self) -> float | None:
        return max(0.0, self.deadline - time.monotonic()) if self.deadline else None

    def wind_down(self, why: str) -> None:
        """Start no new runs (for `why`); what is under way finishes."""
        self.stopping = why
        self.close()

    def close(self) -> None:
        """Threads leave as soon as what they have under way is done."""
        self.closing = True
        self.notify()

    def fail(self, error: BaseException) -> None:
        """A thread hit an error the loop cannot continue past: stop everything; the main
        thread raises it (a UserError as one line, anything else with its traceback)."""
        if self.error is None:
            self.error = error
        self.close()

    def wait(self, seconds: float) -> None:
        """Until new work, a stop, or `seconds`."""
        with self.changed:
            self.changed.wait(seconds)

    def sleep(self, seconds: float) -> None:
        """`seconds`, cut short when the loop closes."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.closing:
            self.wait(min(0.5, end - time.monotonic()))

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()


class Signals:
    """Ctrl-C once: finish the runs under way, start no new ones. Twice (or SIGTERM/SIGHUP):
    abort them now. Handlers only set flags (printing from a handler can deadlock)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, stops: Stops):
        self.stops = stops
        self.previous: dict = {}
        self.counted_at = float("-inf")  # when the latest SIGINT that counted arrived

    def handle(self, signum: int, frame: object) -> None:
        stops = self.stops
        if signum == signal.SIGINT:
            now = time.monotonic()
            if now - self.counted_at < SAME_SIGINT_S:
                return  # the same Ctrl-C again, through a parent that forwards it
            self.counted_at = now
            if not stops.stopping:
                stops.stopping = "stop requested (Ctrl-C)"
                stops.closing = True
                return
        stops.aborting = True
        stops.closing = True

    def __enter__(self) -> Signals:
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

"""What the loop and each worker are doing now: live.json (for `status`, the dashboard) and the UI.

A worker's change is merged into its own entry and also reads as the loop's (with one worker the
two are the same); the loop's summary (best, threshold, queue) is read from the coordinator under
its lock at every change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from autoresearch.ledger.coordinator import Coordinator
from autoresearch.ledger.state import write_live
from autoresearch.stops import Stops

LIVE_EVERY = 1.0  # seconds between live.json writes for progress updates


class LiveBoard:
    """The live state of one loop; `set` changes it, writes live.json and shows it."""

    def __init__(self, repo: Path, tag: str, agent: str, coord: Coordinator, stops: Stops,
                 show: Callable[[dict], None]):
        self.repo, self.tag, self.agent = repo, tag, agent
        self.coord, self.stops, self.show = coord, stops, show
        self.lock = threading.Lock()
        self.state: dict = {"workers": {}}
        self.written = 0.0

    def set(self, worker: int | None, **values: object) -> None:
        """Update what worker `worker` is doing now (None: the loop as a whole)."""
        with self.lock:
            state = self.state
            if worker is not None:
                state["workers"].setdefault(str(worker), {}).update(values, worker=worker)
                state.update(values)  # the latest change also reads as the loop's (one worker)
            else:
                state.update(values)
                for w in state["workers"].values():
                    w.update(values)
            state.update(self.coord.summary(), tag=self.tag, agent=self.agent,
                         time_left_s=self.stops.time_left(), stopping=bool(self.stops.stopping))
            snapshot = dict(state, workers={k: dict(v) for k, v in state["workers"].items()})
            now = time.monotonic()
            # Only a progress line (it has a step) may wait for the next write. A run's start
            # resets step to None and must be written at once: skipped, live.json read "idle"
            # until train.py's first line, and status called a live loop "not running".
            if values.get("step") is None or now - self.written >= LIVE_EVERY:
                self.written = now
                write_live(self.repo, self.tag, snapshot)
        self.show(snapshot)

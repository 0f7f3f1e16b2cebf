"""What the loop and each worker are doing now: live.json (for `status`, the dashboard) and the UI.

The state is typed (`Now` per worker, `Live` for the loop) and changed only through the board's
named moves (a run starts, progresses, ends; an agent starts or ends a turn). live.json and the UI
get its JSON form: the loop's figures, each worker under "workers", and the worker that changed
last also at the top level (with one worker the two are the same; older readers use it). The
loop's figures (best, threshold, queue) are read from the coordinator under its lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.execution.parse import Progress
from autoresearch.ledger.state import write_live
from autoresearch.model import Job
from autoresearch.stops import Stops

if TYPE_CHECKING:
    from autoresearch.ledger.coordinator import Coordinator

LIVE_EVERY = 1.0  # seconds between live.json writes for progress updates
IDLE, TRAINING, EVALUATING, PROPOSING = "idle", "training", "evaluating", "proposing"


@dataclass
class Now:
    """What one worker does now: its GPU's run, and its agent's turn."""

    worker: int
    gpu: str = ""
    device: str = ""
    phase: str = IDLE  # the GPU: idle, training or evaluating
    experiment: int | None = None  # the run under way (or the last one)
    kind: str = ""
    commit: str = ""
    description: str = ""
    step: int | None = None
    progress_pct: float | None = None
    remaining_s: float | None = None
    loss: float | None = None
    agent_phase: str = IDLE  # the agent: idle or proposing
    agent_task: str = ""


@dataclass
class Live:
    """The loop's live state: its workers, and the one that changed last."""

    workers: dict[int, Now] = field(default_factory=dict)
    latest: int = 0

    def as_json(self, loop: dict[str, object]) -> dict:
        """live.json's form: the latest worker's fields, the loop's figures, every worker."""
        latest = self.workers.get(self.latest)
        return dict(asdict(latest) if latest else {}, **loop,
                    workers={str(k): asdict(w) for k, w in sorted(self.workers.items())})


class LiveBoard:
    """The live state of one loop. Each move changes it, writes live.json and shows it."""

    def __init__(self, repo: Path, tag: str, agent: str, coord: Coordinator, stops: Stops,
                 show: Callable[[dict], None]):
        self.repo, self.tag, self.agent_name = repo, tag, agent
        self.coord, self.stops, self.show = coord, stops, show
        self.lock = threading.Lock()
        self.live = Live()
        self.written = 0.0

    def join(self, worker: int, gpu: str, device: str) -> None:
        """A worker is ready, on this GPU."""
        self._change(worker, lambda now: replace(now, gpu=gpu, device=device, phase=IDLE))

    def training(self, worker: int, job: Job) -> None:
        """Its GPU starts a run."""
        self._change(worker, lambda now: replace(
            now, phase=TRAINING, experiment=job.n, kind=job.kind.value, commit=job.commit[:7],
            description=job.description, step=None, progress_pct=0.0, remaining_s=None,
            loss=None))

    def progress(self, worker: int, p: Progress) -> None:
        """A progress line of its run (written at most every LIVE_EVERY seconds)."""
        self._change(worker, lambda now: replace(
            now, step=p.step, progress_pct=p.progress_pct, remaining_s=p.remaining_s,
            loss=p.loss, phase=EVALUATING if p.progress_pct >= 100 else TRAINING),
            may_wait=p.step is not None)

    def idle(self, worker: int) -> None:
        """Its GPU has nothing to run."""
        self._change(worker, lambda now: replace(now, phase=IDLE))

    def agent(self, worker: int, task: str | None) -> None:
        """Its agent starts a turn on `task`, or (None) ends it."""
        self._change(worker, lambda now: replace(
            now, agent_phase=PROPOSING if task is not None else IDLE, agent_task=task or ""))

    def all_idle(self) -> None:
        """The loop ends: every GPU idle."""
        with self.lock:
            for k, now in self.live.workers.items():
                self.live.workers[k] = replace(now, phase=IDLE)
        self._publish(False)

    def _change(self, worker: int, change: Callable[[Now], Now],
                may_wait: bool = False) -> None:
        with self.lock:
            self.live.workers[worker] = change(self.live.workers.get(worker, Now(worker)))
            self.live.latest = worker
        self._publish(may_wait)

    def _publish(self, may_wait: bool) -> None:
        with self.lock:
            loop = dict(self.coord.summary(), tag=self.tag, agent=self.agent_name,
                        time_left_s=self.stops.time_left(), stopping=bool(self.stops.stopping))
            snapshot = self.live.as_json(loop)
            now = time.monotonic()
            # Only a progress line may wait for the next write. A run's start resets step to
            # None and must be written at once: skipped, live.json read "idle" until train.py's
            # first line, and status called a live loop "not running".
            if not may_wait or now - self.written >= LIVE_EVERY:
                self.written = now
                write_live(self.repo, self.tag, snapshot)
        self.show(snapshot)

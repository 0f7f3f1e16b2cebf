"""What runs a job's code, wherever that is: the Executor protocol, what goes in, what comes out.

An executor gets the exact files to run (train.py of the commit and the fixed harness files, whose
hashes the loop has checked), runs the train command in a fresh run folder with one GPU, and
reports how it ended. The run's log and other files end up in `spec.run_dir` on the loop's
machine. Two executors: local.py (a process per GPU slot on this host) and ray.py (a Ray task
that asks for one GPU somewhere in a cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autoresearch.execution.parse import Progress


@dataclass
class RunSpec:
    n: int  # run number, for messages
    files: dict[str, str | bytes]  # name -> content, written into the run folder before the run
    run_dir: Path  # on the loop's machine: run.log, metrics, weights end up here
    cmd: list[str]  # run in the run folder, e.g. [python, "train.py"]
    timeout: float
    grace: float
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for a local slot; None: leave it as it is
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    returncode: int | None  # None when the run was killed (timeout, abort) or lost
    timed_out: bool
    aborted: bool
    seconds: float
    node: str = ""  # the host it ran on
    device: str = ""  # the device model it ran on ("NVIDIA H200", "cpu")
    gpu: str = ""
    lost: str = ""  # the run never finished for a reason outside it (a node died): why


class Executor(Protocol):
    def execute(self, spec: RunSpec, *, on_progress: Callable[[Progress], None],
                should_abort: Callable[[], bool]) -> RunResult: ...

    def clean_up(self, spec: RunSpec) -> list[int]:
        """Kill what a loop killed with -9 left of this run; the process groups it killed."""
        ...

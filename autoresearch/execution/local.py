"""Run train.py once: its own session, a log file, a hard timeout, and no orphans.

train.py may start workers (dataloaders, compile threads, a stray subprocess an agent added), so
it runs under the reaper (procs.py) in a new session: on timeout or abort the reaper gets
SIGTERM and kills every descendant, SIGKILL after a grace period, including processes that left
the session. Every process of a run carries the env var AUTORESEARCH_CHECKPOINT_DIR=<run dir>,
which is how a restarted loop finds and kills a trainer left running by a loop that was itself
killed (kill -9 of the loop does not reach a new session).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.execution.executor import RunResult, RunSpec
from autoresearch.execution.gpus import Slot, plan_workers
from autoresearch.execution.parse import Progress, last_progress
from autoresearch.execution.procs import kill_group, kill_marked, reaper_env, supervised
from autoresearch.execution.sandbox import run_view
from autoresearch.names import GRACE_SECONDS, default_train_cmd
from autoresearch.redact import run_env

CHECKPOINT_ENV = "AUTORESEARCH_CHECKPOINT_DIR"
POLL_SECONDS = 0.5
TAIL_BYTES = 16384  # how much of the log end is read to find the latest progress line


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
    env: dict[str, str] | None = None,
    parent: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_abort: Callable[[], bool] | None = None,
    poll: float = POLL_SECONDS,
    grace: float = GRACE_SECONDS,
) -> RunResult:
    """Run `cmd` in `repo`, output to run_dir/run.log; kill everything it started on timeout or
    abort. `env`: added to this process's environment, less every credential (the run's log is
    served and quoted: a train.py that prints its environment must leak no key); `parent`: a
    process whose death ends the run too (the Ray worker that started it)."""
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "run.log"
    env = reaper_env(run_env(dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}),
                                  **{CHECKPOINT_ENV: str(run_dir)})))
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(supervised(cmd, grace, parent), cwd=repo, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
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
                stop(proc, grace)
                break
            try:
                proc.wait(timeout=poll)  # returns at once when the run ends
            except subprocess.TimeoutExpired:
                pass
    except BaseException:  # a failing callback must not leave the run orphaned in its session
        stop(proc, grace)
        raise
    # The reaper killed what the run left behind; a process that escaped it (no /proc, no
    # subreaper) still carries the run's marker.
    kill_group(proc.pid, grace=1.0)
    kill_stale_runs(run_dir)
    returncode = None if timed_out or aborted else proc.returncode
    return RunResult(returncode, timed_out, aborted, time.monotonic() - start,
                     node=socket.gethostname())


def stop(proc: subprocess.Popen, grace: float) -> None:
    """Ask the reaper to end the run (it kills every descendant), then make sure of it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace + 10.0)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid, grace=0.0)
        proc.wait()


def kill_stale_runs(run_dir: Path) -> list[int]:
    """Kill the process groups of any process still running for run_dir (after a loop crash)."""
    return kill_marked(CHECKPOINT_ENV, str(run_dir.resolve()))


def _read_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class LocalConfig:
    """Runs on this machine: a worker per GPU that --gpus names (execution/gpus.py), --workers
    N on the CPU, or one on the GPU or CPU this process inherits. Checked as it is made."""

    gpus: str | None = None  # --gpus: "all", "0,1", "0,0"; None: one worker
    mixed_gpus: bool = False
    train_cmd: str | None = None  # --train-cmd, as typed; None: this Python runs train.py
    workers: int | None = None  # --workers: N workers on the CPU
    gpu_target: bool = True  # False: the target runs on the CPU (gpu = false), --gpus refused

    def __post_init__(self) -> None:
        if self.gpus is not None and self.gpus.strip() != "all" and not all(
                g.strip().isdigit() for g in self.gpus.split(",")):
            raise UserError(f"--gpus {self.gpus}: give 'all' or GPU numbers separated by "
                            f"commas, e.g. 0,1")
        self.command()

    def command(self) -> list[str]:
        """What trains, run in the run folder."""
        return train_command(self.train_cmd, default_train_cmd())

    def slots(self) -> list[Slot]:
        """The workers: on the CPU (--workers, or a CPU target), one per GPU --gpus names, or
        one on what this process inherits."""
        return plan_workers(self.workers, self.gpus, self.mixed_gpus, self.gpu_target)


def train_command(text: str | None, default: list[str]) -> list[str]:
    """--train-cmd as a command line (split as a shell would), or `default` without one."""
    if not text:
        return default
    try:
        return shlex.split(text)
    except ValueError as e:
        raise UserError(f"--train-cmd {text!r}: {e}") from None


class LocalExecutor:
    """Runs on this host, one process per GPU slot: CUDA_VISIBLE_DEVICES is the slot's GPU."""

    def __init__(self, devices: dict[str | None, str], poll: float = POLL_SECONDS,
                 hidden: list[Path] | None = None):
        self.devices = devices  # slot GPU (None: as inherited) -> device model
        self.poll = poll
        self.hidden = hidden  # directories runs must not see (execution/sandbox.py); None: no view

    def execute(self, spec: RunSpec, *, on_progress: Callable[[Progress], None],
                should_abort: Callable[[], bool]) -> RunResult:
        write_run_files(spec)
        env = dict(spec.env, **({"CUDA_VISIBLE_DEVICES": spec.gpu} if spec.gpu is not None
                                else {}))
        cmd = spec.cmd if self.hidden is None else run_view(spec.cmd, self.hidden)
        result = run_training(cmd, spec.run_dir, spec.run_dir, spec.timeout, env=env,
                              on_progress=on_progress, should_abort=should_abort,
                              poll=self.poll, grace=spec.grace)
        result.device = self.devices.get(spec.gpu, "")
        result.gpu = spec.gpu or ""
        return result

    def clean_up(self, spec: RunSpec) -> list[int]:
        return kill_stale_runs(spec.run_dir)


def write_run_files(spec: RunSpec) -> None:
    """A fresh run folder holding exactly the code to run (no bytecode of an earlier attempt);
    the log of an interrupted attempt at the same run is kept beside it."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(spec.run_dir / "__pycache__", ignore_errors=True)
    log = spec.run_dir / "run.log"
    if log.exists():
        log.replace(spec.run_dir / "run.log.interrupted")
    for name, data in spec.files.items():
        path = spec.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)  # a target's file may be in a folder
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)

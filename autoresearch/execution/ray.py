"""Runs on a Ray cluster: every run is a Ray task that asks for one GPU (one CPU, for a target
that runs on the CPU).

Ray is the engine: it places each task on a node with a free GPU, sets CUDA_VISIBLE_DEVICES
there, ships this package to the nodes (runtime_env py_modules), and re-runs a task whose worker
or node died (max_retries). We write no scheduler, registry or RPC of our own.

What travels with a task: the run's code (train.py of the commit and the fixed harness files,
checked by hash before they leave and again on the node after the run), the fingerprint of the
prepared data the loop's machine has (each node must hold the same: `prepare.py` there, or a shared
cache directory), and the profile. What comes back: how the run ended, the node and GPU model,
and every file of the run folder (log, metrics, weights), written into the loop's runs/ folder.
Progress is not streamed from the nodes: `status` shows the phase, not the step.

On the node the run goes through the same reaper as locally, also told to stop if the Ray worker
that started it dies: a task cancelled by `stop --now` or lost with its worker leaves no process.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.execution.executor import RunResult, RunSpec
from autoresearch.execution.gpus import CPU, Slot, visible_gpus
from autoresearch.execution.local import run_training, train_command, write_run_files
from autoresearch.execution.parse import Progress

RETRIES = 2  # Ray re-runs a task whose worker or node died, this many times
POLL_SECONDS = 0.5
# the harness's settings, the same on every node
ENV_PASSED = ("AUTORESEARCH_PROFILE", "AUTORESEARCH_CACHE", "AUTORESEARCH_TIME_BUDGET")
DEFAULT_CMD = ("{python}", "train.py")  # the node's own Python runs train.py


CONNECT_SECONDS = 5.0  # to reach a named head before Ray is asked (Ray itself waits minutes)


def connect(address: str) -> None:
    """Join the cluster at `address` ("auto", "host:6379", "ray://host:10001"); one line if not."""
    check_reachable(address)
    # Under `uv run`, Ray would ship this whole checkout as every worker's working directory
    # (its uv hook); the nodes have their own environment, and only the package travels.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: `uv sync --extra ray` (on the loop's machine and every "
                        "node)") from None
    package = str(Path(__file__).resolve().parents[1])
    env = {name: os.environ[name] for name in ENV_PASSED if name in os.environ}
    try:
        ray.init(address=address, runtime_env={"py_modules": [package], "env_vars": env},
                 log_to_driver=False, logging_level="error", include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError,
            getattr(ray.exceptions, "AuthenticationError", RuntimeError)) as e:
        reason = " ".join(str(e).split())[:200]
        if "auth" in reason.lower():
            raise UserError(f"the Ray cluster at {address} wants its token ({reason}): export "
                            f"RAY_AUTH_MODE=token with the cluster's token (~/.ray/auth_token or "
                            f"RAY_AUTH_TOKEN_PATH), then run again") from None
        raise UserError(f"cannot reach the Ray cluster at {address} ({reason}): start one with "
                        f"`ray start --head` (or pass its address to --ray)") from None


def check_reachable(address: str) -> None:
    """A head named by host:port must answer within seconds, not after Ray's minutes of retries."""
    if address == "auto":
        return  # Ray finds a local cluster from its own files, quickly, or says none runs
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray {address}: give 'auto', host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}): start "
                        f"it with `ray start --head`, or check the address") from None


def cluster_slots(mixed: bool) -> list[Slot]:
    """One worker per GPU of the cluster; refuses GPU models that differ unless `mixed`."""
    import ray

    models: dict[str, int] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        count = int(resources.get("GPU", 0))
        kind = next((k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")),
                    CPU)
        if count:
            models[kind] = models.get(kind, 0) + count
    total = sum(models.values())
    if not total:
        raise UserError("the Ray cluster has no GPUs (ray.cluster_resources() lists none): start "
                        "its nodes with their GPUs, or leave --ray out")
    if len(models) > 1 and not mixed:
        raise UserError(f"the Ray cluster mixes GPU models ({', '.join(sorted(models))}): their "
                        f"numbers do not compare. Pass --mixed-gpus to compare runs only within "
                        f"each model")
    return [Slot(k, None, "") for k in range(total)]


@dataclass(frozen=True)
class RayConfig:
    """Runs as Ray tasks on the cluster at `address`: one worker per GPU of the cluster (Ray
    places them), or for a target that runs on the CPU, --workers tasks of one CPU each. Checked
    as it is made."""

    address: str  # --ray: "auto", "host:6379", "ray://host:10001"
    mixed_gpus: bool = False
    train_cmd: str | None = None  # --train-cmd, as typed; None: the node's Python runs train.py
    gpus: str | None = None  # --gpus: refused, Ray places the runs
    workers: int | None = None  # --workers: a CPU target's runs at once on the cluster's CPUs
    gpu_target: bool = True  # False: the target runs on the CPU (gpu = false)
    prepared_data: bool = True  # False: a target of its own, no prepared data for nodes to match

    def __post_init__(self) -> None:
        self.command()
        if self.gpus or (self.workers and self.gpu_target):
            raise UserError("--ray places runs on the cluster's GPUs: leave --gpus and --workers "
                            "out")
        if not self.gpu_target and not self.workers:
            raise UserError("this target runs on the CPU (gpu = false in pyproject.toml): give "
                            "--ray with --workers N, the runs to hold at once on the cluster's "
                            "CPUs")
        if not self.address.strip():
            raise UserError("--ray needs the cluster: 'auto', host:6379 or ray://host:10001")

    def command(self) -> list[str]:
        """What trains, run in the run folder on the node."""
        return train_command(self.train_cmd, list(DEFAULT_CMD))

    def open(self, data_sha256: str) -> tuple[list[Slot], RayExecutor]:
        """Join the cluster: its workers, and the executor that runs on it."""
        connect(self.address)
        if not self.gpu_target:  # Ray places each run on a free CPU of any node
            slots = [Slot(k, None, CPU) for k in range(self.workers or 1)]
        else:
            slots = cluster_slots(self.mixed_gpus)
        return slots, RayExecutor(data_sha256 if self.prepared_data else None,
                                  gpu=self.gpu_target)


class RayExecutor:
    def __init__(self, data_sha256: str | None, poll: float = POLL_SECONDS, gpu: bool = True):
        import ray

        self.ray = ray
        self.data_sha256 = data_sha256
        self.poll = poll
        # max_calls=0: a Ray worker may serve many runs. Ray retires a GPU task's worker after
        # one call by default, in case it holds GPU memory; ours never touches the GPU (train.py
        # runs in a child process), and a fresh worker for every run cost CPU time at each start.
        self.task = ray.remote(num_gpus=1 if gpu else 0, max_calls=0, max_retries=RETRIES,
                               retry_exceptions=False)(run_task)

    def execute(self, spec: RunSpec, *, on_progress: Callable[[Progress], None],
                should_abort: Callable[[], bool]) -> RunResult:
        ray = self.ray
        ref = self.task.remote(spec, self.data_sha256)
        while True:
            done, _ = ray.wait([ref], timeout=self.poll)
            if done:
                break
            if should_abort():
                ray.cancel(ref, force=True)
                return RunResult(None, False, True, 0.0)
        try:
            outcome = ray.get(ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.TaskCancelledError, ray.exceptions.ObjectLostError,
                ray.exceptions.RaySystemError) as e:
            return RunResult(None, False, False, 0.0, lost=f"{type(e).__name__} after "
                             f"{RETRIES} retries by Ray")
        except ray.exceptions.RayTaskError as e:
            raise UserError(f"run #{spec.n} failed on its node: {e.cause}") from None
        if outcome["setup_error"]:
            raise UserError(outcome["setup_error"])
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        for name, data in outcome["files"].items():
            (spec.run_dir / name).write_bytes(data)
        return RunResult(outcome["returncode"], outcome["timed_out"], False, outcome["seconds"],
                         node=outcome["node"], device=outcome["device"], gpu=outcome["gpu"])

    def clean_up(self, spec: RunSpec) -> list[int]:
        return []  # a task of a dead driver is ended by Ray; its run by the reaper


def run_task(spec: RunSpec, data_sha256: str | None) -> dict:
    """On a node, in a Ray worker that holds one GPU (or one CPU, for a CPU target): run the spec
    in a fresh folder. data_sha256 None: a target of its own, with no prepared data to match."""
    from autoresearch.config import Harness
    from autoresearch.workspace.guard import data_fingerprint

    node = socket.gethostname()
    work = Path(tempfile.mkdtemp(prefix=f"autoresearch-run-{spec.n}-"))
    try:
        local = RunSpec(spec.n, spec.files, work, spec.cmd, spec.timeout, spec.grace)
        write_run_files(local)
        cache = Harness.read(work).cache_dir if data_sha256 is not None else None
        if cache is not None and data_fingerprint(cache) != data_sha256:
            return {"setup_error": f"node {node} has other prepared data in {cache} than the loop's"
                                   f" machine: run prepare.py there with the same source, or "
                                   f"share the cache directory (AUTORESEARCH_CACHE)"}
        cmd = [sys.executable if part == "{python}" else part for part in spec.cmd]
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        result = run_training(cmd, work, work, spec.timeout, env=spec.env, grace=spec.grace,
                              parent=os.getpid())
        files = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
        first = gpu.split(",")[0]
        return {"setup_error": "", "returncode": result.returncode,
                "timed_out": result.timed_out, "seconds": result.seconds, "node": node,
                "gpu": gpu, "device": visible_gpus().get(first, CPU) if first else CPU,
                "files": files}
    finally:
        shutil.rmtree(work, ignore_errors=True)

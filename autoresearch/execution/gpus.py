"""Which GPUs the loop uses: `--gpus` read against what nvidia-smi reports.

    (no --gpus)   one worker, on the GPU it inherits (or the CPU): as before
    --gpus all    one worker per visible GPU (CUDA_VISIBLE_DEVICES, if set, says which)
    --gpus 0,1,3  one worker per listed GPU
    --gpus 0,0    two workers on GPU 0, where memory allows: the mechanism on a single GPU
    --workers N   N workers on the CPU, GPUs hidden (a target with gpu = false; cpu_slots)

Numbers are only comparable on one GPU model, so workers on different models are refused unless
the user says --mixed-gpus (the loop then compares runs only within one model).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from autoresearch.errors import UserError

QUERY = ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
CPU = "cpu"


@dataclass(frozen=True)
class Slot:
    worker: int
    gpu: str | None  # CUDA_VISIBLE_DEVICES for this worker; None: as inherited
    device: str  # the model, e.g. "NVIDIA H200", or "cpu"


def visible_gpus() -> dict[str, str]:
    """{index: model} of the GPUs nvidia-smi lists; {} when there is none (or no nvidia-smi)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        proc = subprocess.run([exe, *QUERY], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:
        return {}
    found = {}
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit():
            found[parts[0]] = parts[1]
    return found


def plan_slots(spec: str | None, mixed: bool, gpus: dict[str, str] | None = None) -> list[Slot]:
    """The workers for a --gpus value; a one-line UserError for what cannot work."""
    gpus = visible_gpus() if gpus is None else gpus
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        first = (inherited or "0").split(",")[0].strip()
        return [Slot(0, None, gpus.get(first, next(iter(gpus.values()), CPU)))]
    if not gpus:
        raise UserError("--gpus needs NVIDIA GPUs, and nvidia-smi lists none here: leave --gpus "
                        "out to run one worker on this machine's GPU or CPU")
    if spec.strip() == "all":
        chosen = [g.strip() for g in inherited.split(",")] if inherited else sorted(gpus, key=int)
    else:
        chosen = [g.strip() for g in spec.split(",") if g.strip()]
    unknown = [g for g in chosen if g not in gpus]
    if unknown or not chosen:
        raise UserError(f"--gpus {spec}: no GPU {', '.join(unknown) or '(none given)'} here; "
                        f"nvidia-smi lists {', '.join(f'{i} ({m})' for i, m in gpus.items())}")
    models = {gpus[g] for g in chosen}
    if len(models) > 1 and not mixed:
        raise UserError(f"--gpus {spec} mixes GPU models ({', '.join(sorted(models))}): their "
                        f"numbers do not compare. Pick GPUs of one model, or pass --mixed-gpus "
                        f"to compare runs only within each model")
    return [Slot(k, g, gpus[g]) for k, g in enumerate(chosen)]


def cpu_slots(workers: int) -> list[Slot]:
    """`workers` workers on the CPU: each run sees no GPU (CUDA_VISIBLE_DEVICES empty), so the
    runs of a CPU target compare on one device, the CPU."""
    if workers < 1:
        raise UserError(f"--workers {workers}: give 1 or more")
    return [Slot(k, "", CPU) for k in range(workers)]


def plan_workers(workers: int | None, gpus: str | None, mixed: bool, gpu_target: bool
                 ) -> list[Slot]:
    """The workers of a run: --workers N on the CPU; a CPU target (gpu = false) runs on the CPU
    (one worker without --workers); else --gpus as plan_slots says."""
    if workers is not None and gpus is not None:
        raise UserError("--workers runs workers on the CPU and --gpus on GPUs: give one of them")
    if not gpu_target and gpus is not None:
        raise UserError("this target runs on the CPU (gpu = false in pyproject.toml): use "
                        "--workers N instead of --gpus")
    if workers is not None or not gpu_target:
        return cpu_slots(workers or 1)
    return plan_slots(gpus, mixed)

"""The verification process: one run's weights on the private split, the number on stdout.

    python -m autoresearch.verify.evaluate RUN_DIR     (cwd: the repo root)

The loop starts it inside sandbox.sealed_view, on the GPU the run used. It loads the weights and
the model class from the run's own train.py copy (as `sample` does) and scores them with the
fixed evaluate_bpb of prepare.py on split="private". Its only answer is the last stdout line,
{"private_bpb": <float>}; on failure it exits non-zero.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from autoresearch.artifacts.sample import load_model, pick_device
from autoresearch.errors import UserError

# Fixed, not the run's own batch size: an agent's batch must not change which tokens are scored
# (each profile's EVAL_TOKENS is a multiple of 32 sequences).
EVAL_BATCH_SIZE = 32


def private_bpb(run_dir: Path, repo: Path) -> float:
    """bpb of run_dir's model.pt on the private split, bf16 autocast on CUDA as in training."""
    import torch

    device = pick_device(None)
    model, tokenizer, _ = load_model(run_dir, device, repo)
    prepare = sys.modules["prepare"]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") \
        else contextlib.nullcontext()
    with autocast:
        return prepare.evaluate_bpb(model, tokenizer, EVAL_BATCH_SIZE, split="private")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m autoresearch.verify.evaluate RUN_DIR", file=sys.stderr)
        return 2
    try:
        value = private_bpb(Path(args[0]), Path.cwd())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"private_bpb": value}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

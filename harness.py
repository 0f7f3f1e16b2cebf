"""
The machinery train.py stands on, fixed like prepare.py: FlashAttention-4 as custom ops, the GPU
peak-FLOPs table for MFU, and the checkpoint writer the loop reads. Not edited by the agent; the
loop checks this file's hash before every run. train.py imports it in one line, so the file the
agent reads is about the model, the optimizer and the training loop.
"""

import json
import os
import subprocess
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

# prepare sets FlashAttention-4's disk cache (FLASH_ATTENTION_CUTE_DSL_CACHE_DIR) on import
from prepare import MAX_SEQ_LEN, PROFILE

# ---------------------------------------------------------------------------
# FlashAttention-4 (CuTe DSL kernels, the flash-attn-4 package) on Hopper GPUs
# ---------------------------------------------------------------------------

FA4_CAPABILITIES = {(9, 0)}  # measured on the H100; FA4 also targets Blackwell, not measured here


def flash_attention_4_available(device: torch.device) -> bool:
    """Whether FlashAttention-4 can run every attention layer here: a GPU it was measured on,
    and the package installed. Its compiled kernels persist in the cache directory (prepare.py)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) not in FA4_CAPABILITIES:
        return False
    try:
        import flash_attn.cute.interface  # noqa: F401  (what the custom ops below call)
    except ImportError:
        return False
    # compiling its kernels warns about an argument it passes itself; nothing to act on
    warnings.filterwarnings("ignore", message="Argument aux_data", category=UserWarning)
    return True


def fa4_window_left(window: int, seq_len: int) -> int:
    """FA4's window_size_left: how many earlier tokens a query sees (-1 here: all of them)."""
    return window - 1 if window < seq_len else -1


def fa4_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  window: int) -> torch.Tensor:
    """Causal attention over at most `window` tokens (self included). q, k, v: (B, T, H, D)."""
    return torch.ops.autoresearch.fa4_fwd(q, k, v, fa4_window_left(window, q.size(1)))[0]


# Run by a child process: this file's FA4 ops, forward and backward, once per window on a
# one-sequence batch, which compiles the kernels (~14 s cold) into the disk cache while the
# trainer compiles the model, instead of after it. With a warm cache the child only loads them.
FA4_WARMUP = """
import os, runpy, sys, torch
sys.path.insert(0, os.path.dirname(sys.argv[1]))
ops = runpy.run_path(sys.argv[1])
T, H, D, *lefts = map(int, sys.argv[2:])
q = torch.randn(1, T, H, D, device="cuda", dtype=torch.bfloat16)
for left in lefts:
    out, lse = ops["fa4_fwd"](q, q, q, left)
    ops["fa4_bwd"](out, q, q, q, out, lse, left)
"""


def warm_flash_attention_4(seq_len: int, n_head: int, head_dim: int,
                           windows: list[int]) -> subprocess.Popen:
    """Start compiling FA4's kernels for these windows in a child process; the caller kills it
    once its own first step has run them."""
    lefts = sorted({fa4_window_left(w, seq_len) for w in windows})
    args = [os.path.abspath(__file__), seq_len, n_head, head_dim, *lefts]
    return subprocess.Popen([sys.executable, "-c", FA4_WARMUP, *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# FlashAttention-4 as two custom ops (forward, backward): torch.compile sees each as one opaque
# kernel, so the model stays one graph. Layout (B, T, H, D), always causal. They import the
# kernels where they run: a process may hold several copies of this module (`sample` loads
# runs' code, older train.py copies defined these ops themselves), and the op registered last
# is the one that runs. Registering again frees the op an earlier copy's `fa4_fwd` object holds
# (calling that object is then undefined: it may reach whatever op took its place), so callers go
# through torch.ops.autoresearch, looked up at call time.
@torch.library.custom_op("autoresearch::fa4_fwd", mutates_args=())
def fa4_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            window_left: int) -> tuple[torch.Tensor, torch.Tensor]:
    from flash_attn.cute.interface import _flash_attn_fwd

    left = None if window_left < 0 else window_left
    out, lse = _flash_attn_fwd(q, k, v, causal=True, window_size_left=left, return_lse=True)[:2]
    return out, lse


@fa4_fwd.register_fake
def _(q, k, v, window_left):
    B, T, H, _ = q.shape
    return q.new_empty(B, T, H, v.size(-1)), q.new_empty(B, H, T, dtype=torch.float32)


@torch.library.custom_op("autoresearch::fa4_bwd", mutates_args=())
def fa4_bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            out: torch.Tensor, lse: torch.Tensor,
            window_left: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from flash_attn.cute.interface import _flash_attn_bwd

    left = None if window_left < 0 else window_left
    dq, dk, dv = _flash_attn_bwd(q, k, v, out, dout.contiguous(), lse, causal=True,
                                 window_size_left=left)
    return dq, dk, dv


@fa4_bwd.register_fake
def _(dout, q, k, v, out, lse, window_left):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _fa4_setup_context(ctx, inputs, output):
    q, k, v, window_left = inputs
    ctx.save_for_backward(q, k, v, *output)
    ctx.window_left = window_left


def _fa4_backward(ctx, dout, dlse):
    return (*torch.ops.autoresearch.fa4_bwd(dout, *ctx.saved_tensors, ctx.window_left), None)


fa4_fwd.register_autograd(_fa4_backward, setup_context=_fa4_setup_context)

# ---------------------------------------------------------------------------
# Hardware: peak bf16 throughput for MFU, by GPU name (dense, no sparsity; vendor datasheets)
# ---------------------------------------------------------------------------

PEAK_BF16_FLOPS = [  # first match wins, so specific names come before general ones
    ("GH200", 989.5e12), ("H200", 989.5e12), ("H100 NVL", 835e12), ("H100 PCIe", 756e12),
    ("H100", 989.5e12), ("H800", 989.5e12), ("B200", 2250e12), ("A100", 312e12),
    ("A800", 312e12), ("L40S", 362.05e12), ("L40", 181.05e12), ("L4", 121e12),
    ("RTX 6000 Ada", 364.2e12), ("RTX A6000", 154.8e12), ("A10G", 70e12), ("A10", 125e12),
    ("RTX 5090", 209.5e12), ("RTX 4090", 165.2e12), ("RTX 4080", 97.5e12),
    ("RTX 3090", 71e12), ("RTX 3080", 59.5e12),
]


def peak_flops(device: torch.device) -> float | None:
    """This GPU's peak bf16 FLOP/s, or None (a CPU, or a GPU the table does not know)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in name), None)


# ---------------------------------------------------------------------------
# Checkpoint for the loop: `sample` and the held-out verification load it with the run's train.py
# ---------------------------------------------------------------------------


def save_checkpoint(directory: str | Path, model: torch.nn.Module, config: Any,
                    extra: dict) -> None:
    """Weights (model.pt) and config.json (`config`, a dataclass, and `extra`) in `directory`,
    written before the final evaluation so that a crash there does not lose the run."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / "model.pt")
    meta = {"model": asdict(config), "profile": PROFILE, "max_seq_len": MAX_SEQ_LEN, **extra}
    (directory / "config.json").write_text(json.dumps(meta, indent=1))

"""
Pretrain a small GPT for a fixed time budget, then report val_bpb. Single device, single file.
This is the one file the agent edits; the harness (prepare.py, constants.py, harness.py) is fixed.

    uv run train.py                              # H100 rules: 300 s of training
    AUTORESEARCH_PROFILE=cpu uv run train.py     # tiny profile: tests and demos on a laptop
"""

import gc
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import flex_attention as flex

from harness import (
    fa4_attention,
    flash_attention_4_available,
    peak_flops,
    save_checkpoint,
    warm_flash_attention_4,
)
from prepare import (
    MAX_SEQ_LEN,
    PROFILE,
    TIME_BUDGET,
    Tokenizer,
    default_device,
    evaluate_bpb,
    make_dataloader,
)

# ---------------------------------------------------------------------------
# Hyperparameters (edit these directly, no CLI flags needed)
# ---------------------------------------------------------------------------

# Model architecture
ASPECT_RATIO = 64  # model_dim = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 128
WINDOW_PATTERN = "SSSL"  # per layer, repeating: S = half-context sliding window, L = full context
SOFTCAP = 15.0  # logits are squashed to (-SOFTCAP, SOFTCAP) with tanh

# Optimization
TOTAL_BATCH_SIZE = 2**19  # tokens per optimizer step
EMBEDDING_LR = 0.6  # AdamW, token and value embeddings
UNEMBEDDING_LR = 0.004  # AdamW, lm_head
MATRIX_LR = 0.04  # Muon, every matrix inside the transformer blocks
SCALAR_LR = 0.5  # AdamW, per-layer residual scalars
WEIGHT_DECAY = 0.2  # Muon matrices only, decays with the learning rate
ADAM_BETAS = (0.8, 0.95)
WARMUP_RATIO = 0.0  # fraction of the time budget spent warming the learning rate up
WARMDOWN_RATIO = 0.5  # fraction of the time budget spent decaying it at the end
FINAL_LR_FRAC = 0.0  # learning rate at the end, as a fraction of the peak

# Model size and batch
DEPTH = 8
DEVICE_BATCH_SIZE = 128  # sequences per forward/backward; gradients accumulate up to the total
FINAL_EVAL_BATCH_SIZE = 128  # as in training: evaluation then reuses the compiled training graph
SEED = 42

# Smaller machines: the harness profile (AUTORESEARCH_PROFILE, see constants.py) fixes a shorter
# context and budget. On 24 GB cards the batches scale down from the values above, so a change
# to them still takes effect; the cpu profile is a fixed toy for tests and demos.
if PROFILE == "consumer":
    DEVICE_BATCH_SIZE, TOTAL_BATCH_SIZE = DEVICE_BATCH_SIZE // 4, TOTAL_BATCH_SIZE // 4
    FINAL_EVAL_BATCH_SIZE = DEVICE_BATCH_SIZE
elif PROFILE == "cpu":
    DEPTH, ASPECT_RATIO, HEAD_DIM = 2, 64, 64
    DEVICE_BATCH_SIZE, TOTAL_BATCH_SIZE, FINAL_EVAL_BATCH_SIZE = 8, 8 * MAX_SEQ_LEN, 8

# Steps whose time does not count toward the budget: compilation happens in the first (on an
# H100 the second step already runs at full speed, warm caches or cold)
EXCLUDED_STEPS = 1

# ---------------------------------------------------------------------------
# Model: GPT with rotary embeddings, QK-norm, ReLU² MLP, gated value embeddings,
# sliding-window attention, per-layer residual scalars and soft-capped logits
# ---------------------------------------------------------------------------


@dataclass
class GPTConfig:
    sequence_len: int = 2048
    vocab_size: int = 8192
    n_layer: int = 8
    n_head: int = 4
    n_kv_head: int = 4
    n_embd: int = 512
    window_pattern: str = "SSSL"
    softcap: float = 15.0


def norm(x):
    return F.rms_norm(x, (x.size(-1),))


def has_value_embedding(layer_idx, n_layer):
    """Every other layer gets a value embedding, the last one always."""
    return layer_idx % 2 == (n_layer - 1) % 2


def rotary_tables(seq_len, head_dim, base=10000.0):
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]  # (1, T, 1, D/2)


def apply_rotary(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


# Attention kernels. On Hopper GPUs FlashAttention-4 (harness.py) runs every layer; elsewhere
# full-context layers use SDPA and sliding windows use FlexAttention (CUDA) or SDPA with a dense
# mask (CPU).
flash_attention_4 = False  # in use: set in main() where harness.flash_attention_4_available()
flex_attention = None  # compiled FlexAttention, set up by GPT.use_flex() on CUDA


def sliding_window_block_mask(seq_len, window, device):
    """FlexAttention block mask: causal, and at most `window` tokens back (self included)."""
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < window)

    return flex.create_block_mask(mask_mod, None, None, seq_len, seq_len, device=device)


def attention(q, k, v, window, block_mask):
    """Causal attention over at most `window` tokens (self included). q, k, v: (B, T, H, D)."""
    if flash_attention_4:
        return fa4_attention(q, k, v, window)
    T = q.size(1)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # SDPA/Flex: (B, H, T, D)
    gqa = q.size(1) != k.size(1)
    if window >= T:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    elif block_mask is not None:
        y = flex_attention(q, k, v, block_mask=block_mask, enable_gqa=gqa)
    else:
        idx = torch.arange(T, device=q.device)
        dist = idx[:, None] - idx[None, :]
        mask = (dist >= 0) & (dist < window)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
    return y.transpose(1, 2)


class CausalSelfAttention(nn.Module):
    VE_GATE_CHANNELS = 32  # the value-embedding gate looks at the first channels of the input

    def __init__(self, config, layer_idx):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        assert config.n_embd % config.n_head == 0 and config.n_head % config.n_kv_head == 0
        kv_dim = self.n_kv_head * self.head_dim
        self.c_q = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.c_k = nn.Linear(config.n_embd, kv_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, kv_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.ve_gate = None
        if has_value_embedding(layer_idx, config.n_layer):
            self.ve_gate = nn.Linear(self.VE_GATE_CHANNELS, self.n_kv_head, bias=False)

    def forward(self, x, ve, cos, sin, window, block_mask):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        if ve is not None:  # gated value embedding: token identity mixed straight into values
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.VE_GATE_CHANNELS]))
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)
        q = norm(apply_rotary(q, cos, sin))  # QK-norm keeps attention logits bounded
        k = norm(apply_rotary(k, cos, sin))
        y = attention(q, k, v, window, block_mask)
        return self.c_proj(y.reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, x0, resid_lambda, x0_lambda, ve, cos, sin, window, block_mask):
        x = resid_lambda * x + x0_lambda * x0
        x = x + self.attn(norm(x), ve, cos, sin, window, block_mask)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        head_dim = config.n_embd // config.n_head
        kv_dim = config.n_kv_head * head_dim
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.value_embeds = nn.ModuleDict({
            str(i): nn.Embedding(config.vocab_size, kv_dim)
            for i in range(config.n_layer) if has_value_embedding(i, config.n_layer)
        })
        # per layer: x = resid_lambda * x + x0_lambda * (the normed input embedding)
        self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(config.n_layer))
        cos, sin = rotary_tables(config.sequence_len, head_dim)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.window_sizes = self._window_sizes(config)
        self.block_masks = {}  # (seq_len, window) -> FlexAttention block mask, see use_flex()

    @staticmethod
    def _window_sizes(config):
        pattern = config.window_pattern.upper()
        assert pattern and set(pattern) <= {"S", "L"}, f"bad window pattern {pattern!r}"
        sizes = {"L": config.sequence_len, "S": config.sequence_len // 2}
        windows = [sizes[pattern[i % len(pattern)]] for i in range(config.n_layer)]
        windows[-1] = config.sequence_len  # the last layer always sees the whole context
        return windows

    @torch.no_grad()
    def init_weights(self):
        s = 3**0.5 * self.config.n_embd**-0.5  # uniform bound with std 1/sqrt(n_embd)
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -s, s)
            nn.init.zeros_(block.attn.c_proj.weight)  # each block starts as the identity
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)
        for ve in self.value_embeds.values():
            nn.init.uniform_(ve.weight, -s, s)
        self.resid_lambdas.fill_(1.0)
        self.x0_lambdas.fill_(0.1)

    def use_flex(self, seq_len, device):
        """Prepare FlexAttention masks for the sliding windows (CUDA, before compiling).
        FlexAttention is only fast compiled; compiling is deferred to here because merely
        setting torch.compile up costs seconds of import time on CPU-only runs."""
        global flex_attention
        if flex_attention is None:
            flex_attention = torch.compile(flex.flex_attention, dynamic=False)
        for window in set(self.window_sizes):
            if window < seq_len:
                self.block_masks[(seq_len, window)] = sliding_window_block_mask(
                    seq_len, window, device)

    def forward(self, idx, targets=None, reduction="mean"):
        B, T = idx.shape
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.wte(idx))
        x0 = x
        for i, block in enumerate(self.blocks):
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            window = self.window_sizes[i]
            x = block(x, x0, self.resid_lambdas[i], self.x0_lambdas[i], ve, cos, sin, window,
                      self.block_masks.get((T, window)))
        logits = self.lm_head(norm(x)).float()
        logits = self.config.softcap * torch.tanh(logits / self.config.softcap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-1, reduction=reduction)


def count_flops_per_token(model):
    """Training FLOPs per token: 6 per weight of every matmul (forward + backward), plus
    attention scores and values over each layer's window (PaLM-style accounting)."""
    cfg = model.config
    lookups = model.wte.weight.numel() + sum(e.weight.numel() for e in model.value_embeds.values())
    matmul_params = sum(p.numel() for p in model.parameters()) - lookups
    head_dim = cfg.n_embd // cfg.n_head
    attn = sum(12 * cfg.n_head * head_dim * min(w, cfg.sequence_len) for w in model.window_sizes)
    return 6 * matmul_params + attn


# ---------------------------------------------------------------------------
# Optimizer: Muon for the transformer's matrices, AdamW for everything else
# ---------------------------------------------------------------------------


def orthogonalize(G, steps=5):
    """Newton-Schulz iteration: maps G = U S V^T to roughly U V^T (every singular value pushed
    into about [0.7, 1.2]) with matmuls only. Quintic coefficients from the Muon paper, tuned
    for speed over exactness. Works on a batch of same-shaped matrices."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16() if G.is_cuda else G.float()
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # top singular value <= 1
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


class Muon(torch.optim.Optimizer):
    """Momentum, then orthogonalized updates: every direction of a matrix moves at the same rate.
    Parameters are grouped by shape so that each group is orthogonalized in one batched call."""

    def __init__(self, params, lr, momentum=0.95, weight_decay=0.0, ns_steps=5):
        by_shape = {}
        for p in params:
            by_shape.setdefault(tuple(p.shape), []).append(p)
        groups = [{"params": ps} for ps in by_shape.values()]
        super().__init__(groups, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      ns_steps=ns_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            momentum = group["momentum"]
            grads = torch.stack([p.grad for p in params])
            if "momentum_buffer" not in self.state[params[0]]:
                self.state[params[0]]["momentum_buffer"] = torch.zeros_like(grads)
            buf = self.state[params[0]]["momentum_buffer"]
            buf.lerp_(grads, 1 - momentum)
            update = orthogonalize(grads.lerp_(buf, momentum), group["ns_steps"])  # Nesterov
            rows, cols = params[0].shape[-2:]
            scale = max(1.0, rows / cols) ** 0.5
            lr, wd = group["lr"], group["weight_decay"]
            for p, u in zip(params, update.unbind(0), strict=True):
                p.mul_(1 - lr * wd).add_(u.to(p.dtype), alpha=-lr * scale)


def make_optimizers(model, device):
    dmodel_scale = (model.config.n_embd / 768) ** -0.5  # AdamW rates were tuned at width 768
    embeddings = [model.wte.weight] + [e.weight for e in model.value_embeds.values()]
    adam_groups = [
        dict(params=embeddings, lr=EMBEDDING_LR * dmodel_scale),
        dict(params=[model.lm_head.weight], lr=UNEMBEDDING_LR * dmodel_scale),
        dict(params=[model.resid_lambdas], lr=SCALAR_LR * 0.01),
        dict(params=[model.x0_lambdas], lr=SCALAR_LR, betas=(0.96, 0.95)),
    ]
    adam = torch.optim.AdamW(adam_groups, betas=ADAM_BETAS, eps=1e-10, weight_decay=0.0,
                             fused=device.type == "cuda")
    muon = Muon([p for p in model.blocks.parameters() if p.ndim == 2], lr=MATRIX_LR,
                weight_decay=WEIGHT_DECAY)
    optimizers = [adam, muon]
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers


def lr_multiplier(progress):
    """Learning-rate schedule over the fraction of the time budget used: warm up, hold, decay."""
    if progress < WARMUP_RATIO:
        return progress / WARMUP_RATIO
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    decay = (1.0 - progress) / WARMDOWN_RATIO
    return decay + (1 - decay) * FINAL_LR_FRAC


def muon_momentum(step):
    return 0.85 + 0.10 * min(step / 300, 1.0)  # lower momentum while the model moves fast


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


class ThroughTrainingGraph(nn.Module):
    """Runs evaluation through the graph compiled for training instead of compiling a second,
    no-grad one (10+ s cold): same shapes, same arguments, grad mode on, output detached at
    once so no activations are kept. Requires evaluating at the training batch size."""

    def __init__(self, compiled):
        super().__init__()
        self.compiled = compiled

    def forward(self, idx, targets, reduction="none"):
        with torch.enable_grad():
            return self.compiled(idx, targets, reduction=reduction).detach()


def fail(message):
    print(f"error: {message}", flush=True)
    sys.exit(3)


def main():
    t_start = time.time()
    torch.manual_seed(SEED)
    device = torch.device(default_device())
    if PROFILE != "cpu" and device.type == "cpu":
        sys.exit(f"error: the {PROFILE} profile needs a GPU and none was found; "
                 "for a CPU run use AUTORESEARCH_PROFILE=cpu uv run train.py")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else nullcontext())
    interactive = sys.stdout.isatty()

    tokenizer = Tokenizer.from_directory()
    # first, so that its packing process fills its buffer while the model is built and compiled
    train_loader = make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "train",
                                   device=device)
    model_dim = -(-DEPTH * ASPECT_RATIO // HEAD_DIM) * HEAD_DIM
    config = GPTConfig(sequence_len=MAX_SEQ_LEN, vocab_size=tokenizer.get_vocab_size(),
                       n_layer=DEPTH, n_head=model_dim // HEAD_DIM, n_kv_head=model_dim // HEAD_DIM,
                       n_embd=model_dim, window_pattern=WINDOW_PATTERN, softcap=SOFTCAP)
    model = GPT(config).to(device)
    model.init_weights()
    if device.type == "cuda":  # bf16 embeddings make the whole residual stream bf16: half the
        model.wte.to(torch.bfloat16)  # bytes for every norm, residual add and their gradients
        model.value_embeds.to(torch.bfloat16)
    num_params = sum(p.numel() for p in model.parameters())
    flops_per_token = count_flops_per_token(model)
    global flash_attention_4
    flash_attention_4 = flash_attention_4_available(device)
    fa4_warmer = None
    if flash_attention_4:
        attention_kernels = "FlashAttention-4"
        fa4_warmer = warm_flash_attention_4(config.sequence_len, config.n_head,
                                            config.n_embd // config.n_head, model.window_sizes)
    elif device.type == "cuda":
        model.use_flex(MAX_SEQ_LEN, device)
        attention_kernels = "SDPA + FlexAttention"
    else:
        attention_kernels = "SDPA"
    train_model = torch.compile(model, dynamic=False) if device.type == "cuda" else model
    optimizers = make_optimizers(model, device)

    tokens_per_micro = DEVICE_BATCH_SIZE * MAX_SEQ_LEN
    assert TOTAL_BATCH_SIZE % tokens_per_micro == 0, "TOTAL_BATCH_SIZE must be a multiple of " \
        f"DEVICE_BATCH_SIZE * MAX_SEQ_LEN = {tokens_per_micro}"
    grad_accum = TOTAL_BATCH_SIZE // tokens_per_micro
    print(f"profile: {PROFILE} | device: {device} | params: {num_params / 1e6:.1f}M | "
          f"depth {DEPTH}, width {model_dim} | batch {TOTAL_BATCH_SIZE:,} tokens "
          f"({grad_accum} x {DEVICE_BATCH_SIZE} x {MAX_SEQ_LEN}) | "
          f"attention: {attention_kernels} | budget {TIME_BUDGET}s", flush=True)

    peak = peak_flops(device)
    max_loss = 2 * math.log(config.vocab_size)  # twice the loss of uniform guessing
    training_time, counted_tokens, step, smooth_loss = 0.0, 0, 0, 0.0
    t_loop = time.time()
    while True:
        t0 = time.time()
        for _ in range(grad_accum):
            x, y, epoch = next(train_loader)
            with autocast:
                loss = train_model(x, y, reduction="none").mean()  # "none": see evaluation
            (loss / grad_accum).backward()
        progress = min(training_time / TIME_BUDGET, 1.0)
        lrm = lr_multiplier(progress)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lrm
                if isinstance(opt, Muon):
                    group["momentum"] = muon_momentum(step)
            opt.step()
        model.zero_grad(set_to_none=True)
        loss_value = loss.item()  # waits for the GPU: the step time below is real
        dt = time.time() - t0
        if step == 0:
            first_step_seconds = dt  # includes compilation on CUDA
            if fa4_warmer is not None:  # done, or no longer needed: the kernels have run
                fa4_warmer.kill()
                fa4_warmer.wait()
            # Python's cyclic garbage collector, walking the compiler's millions of objects,
            # stalled steps by 50-150 ms every few dozen steps: no collections while training
            gc.disable()
        if not math.isfinite(loss_value):
            fail(f"loss is not finite ({loss_value}) at step {step}")
        if step > EXCLUDED_STEPS and loss_value > max_loss:
            fail(f"loss exploded ({loss_value:.2f} > {max_loss:.2f}) at step {step}")
        step += 1
        if step > EXCLUDED_STEPS:
            training_time += dt
            counted_tokens += TOTAL_BATCH_SIZE
        smooth_loss = 0.9 * smooth_loss + 0.1 * loss_value
        debiased = smooth_loss / (1 - 0.9**step)
        tok_per_s = TOTAL_BATCH_SIZE / dt
        mfu = 100 * flops_per_token * tok_per_s / peak if peak else 0.0
        remaining = max(0.0, TIME_BUDGET - training_time)
        done = min(training_time / TIME_BUDGET, 1.0)  # after this step, as `remaining` is
        print(f"step {step:05d} ({100 * done:.1f}%) | loss {debiased:.6f} | lrm {lrm:.2f} | "
              f"dt {dt * 1000:.0f}ms | tok/s {tok_per_s:,.0f} | mfu {mfu:.1f}% | epoch {epoch} | "
              f"remaining {remaining:.0f}s", end="\r" if interactive else "\n", flush=True)
        if step > EXCLUDED_STEPS and training_time >= TIME_BUDGET:
            break
    if interactive:
        print()
    gc.enable()

    if os.environ.get("AUTORESEARCH_CHECKPOINT_DIR"):
        save_checkpoint(os.environ["AUTORESEARCH_CHECKPOINT_DIR"], model, config,
                        {"num_steps": step, "training_seconds": training_time})
    t_eval = time.time()
    reuse_graph = train_model is not model and FINAL_EVAL_BATCH_SIZE == DEVICE_BATCH_SIZE
    with autocast:
        val_bpb = evaluate_bpb(ThroughTrainingGraph(train_model) if reuse_graph else train_model,
                               tokenizer, FINAL_EVAL_BATCH_SIZE)
    if not math.isfinite(val_bpb):
        fail(f"val_bpb is not finite ({val_bpb})")

    print(f"timing: start-up {t_loop - t_start:.1f}s | first step {first_step_seconds:.1f}s | "
          f"evaluation {time.time() - t_eval:.1f}s")
    peak_vram_mb = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
    steady_mfu = 100 * flops_per_token * counted_tokens / training_time / peak if peak else 0.0
    print(f"profile: {PROFILE}")
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_time:.1f}")
    print(f"total_seconds:    {time.time() - t_start:.1f}")
    print(f"peak_vram_mb:     {peak_vram_mb:.1f}")
    print(f"mfu_percent:      {steady_mfu:.2f}")
    print(f"total_tokens_M:   {step * TOTAL_BATCH_SIZE / 1e6:.4f}")  # cpu: 0.02, not 0.0
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {num_params / 1e6:.1f}")
    print(f"depth:            {DEPTH}")


if __name__ == "__main__":
    main()

"""train.py: the optimizer's math, the model's interface, and a complete run on the cpu profile."""

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import types

import pytest
import torch
from conftest import REPO, run_train
from torch._library import custom_ops

import harness
import train

SUMMARY_KEYS = ["val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
                "total_tokens_M", "num_steps", "num_params_M", "depth"]


def random_matrix(rows: int, cols: int, singular_values: torch.Tensor) -> torch.Tensor:
    u, _ = torch.linalg.qr(torch.randn(rows, len(singular_values)))
    v, _ = torch.linalg.qr(torch.randn(cols, len(singular_values)))
    return u @ torch.diag(singular_values) @ v.T


def test_orthogonalize_gives_near_orthogonal_updates():
    torch.manual_seed(0)
    for rows, cols in [(64, 256), (256, 64), (128, 128)]:
        k = min(rows, cols)
        G = random_matrix(rows, cols, torch.logspace(-1, 1, k))  # condition number 100
        sv = torch.linalg.svdvals(train.orthogonalize(G))
        assert sv[:k].min() > 0.5 and sv.max() < 1.3  # every direction moves at about one rate
    batch = torch.stack([random_matrix(32, 48, torch.logspace(-1, 1, 32)) for _ in range(3)])
    batched = train.orthogonalize(batch)
    assert torch.allclose(batched[1], train.orthogonalize(batch[1]), atol=1e-5)


@pytest.mark.slow
def test_muon_step_is_the_scaled_orthogonalized_nesterov_momentum():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(32, 64))
    start = p.detach().clone()
    opt = train.Muon([p], lr=0.1, momentum=0.9, weight_decay=0.0)
    p.grad = torch.randn(32, 64)
    g = p.grad.clone()
    opt.step()
    expected = start - 0.1 * train.orthogonalize(g * (1 - 0.9) * 0.9 + g * 0.1)
    assert torch.allclose(p.detach(), expected, atol=1e-5)


def test_model_interface_and_window_pattern():
    config = train.GPTConfig(sequence_len=64, vocab_size=512, n_layer=4, n_head=2, n_kv_head=2,
                             n_embd=64, window_pattern="SL")
    model = train.GPT(config)
    model.init_weights()
    assert model.window_sizes == [32, 64, 32, 64]
    idx = torch.randint(0, 512, (2, 40))
    logits = model(idx)
    assert logits.shape == (2, 40, 512) and logits.dtype == torch.float32
    assert logits.abs().max() <= config.softcap
    per_token = model(idx, idx, reduction="none")
    assert per_token.shape == (80,)
    assert model(idx, idx).item() == pytest.approx(per_token.mean().item(), rel=1e-5)
    # causal: the future never changes the past
    other = idx.clone()
    other[:, 30:] = (other[:, 30:] + 1) % 512
    assert torch.allclose(model(other)[:, :30], logits[:, :30], atol=1e-5)


def test_evaluation_through_the_training_graph_computes_the_same_and_keeps_no_graph():
    config = train.GPTConfig(sequence_len=32, vocab_size=256, n_layer=2, n_head=2, n_kv_head=2,
                             n_embd=32, window_pattern="SL")
    model = train.GPT(config)
    model.init_weights()
    grad_modes = []
    model.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    wrapped = train.ThroughTrainingGraph(model)
    idx = torch.randint(0, 256, (3, 32))
    with torch.no_grad():  # as evaluate_bpb calls it
        reference = model(idx, idx, reduction="none")
        per_token = wrapped(idx, idx, reduction="none")
    assert grad_modes == [False, True]  # inside, grad mode matches training: the same graph
    assert per_token.grad_fn is None and not per_token.requires_grad  # activations released
    assert torch.equal(per_token, reference)
    # evaluate_bpb finds the device from the parameters: they are the model's own
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in model.parameters()]


def test_sliding_window_attention_sees_only_its_window():
    q = k = v = torch.randn(1, 16, 1, 8)  # (B, T, H, D)
    out = train.attention(q, k, v, window=4, block_mask=None)
    v2 = v.clone()
    v2[:, 0] += 100.0  # token 0 is outside every window from position 4 on
    out2 = train.attention(q, k, v2, window=4, block_mask=None)
    assert torch.allclose(out[:, 4:], out2[:, 4:]) and not torch.allclose(out[:, :4], out2[:, :4])


class ReferenceFlashAttention4(types.ModuleType):
    """flash_attn.cute.interface's two entry points as its documentation defines them, in plain
    PyTorch (the CuTe kernels need a Hopper GPU): causal attention in which query i sees keys
    i - window_size_left .. i (all earlier keys when it is None); layout (B, T, H, D)."""

    def __init__(self):
        super().__init__("flash_attn.cute.interface")
        self.calls = {"fwd": 0, "bwd": 0}

    @staticmethod
    def _probs(q, k, window_size_left):
        """Softmax probabilities (B, H, T, T) and log-sum-exp (B, H, T); q, k: (B, H, T, D)."""
        scores = q @ k.mT * q.size(-1) ** -0.5
        pos = torch.arange(q.size(2))
        dist = pos[:, None] - pos[None, :]
        limit = q.size(2) if window_size_left is None else window_size_left
        scores = scores.masked_fill(~((dist >= 0) & (dist <= limit)), float("-inf"))
        lse = scores.logsumexp(-1)
        return (scores - lse[..., None]).exp(), lse

    def _flash_attn_fwd(self, q, k, v, causal, window_size_left, return_lse):
        assert causal and return_lse
        self.calls["fwd"] += 1
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        probs, lse = self._probs(q, k, window_size_left)
        return (probs @ v).transpose(1, 2).contiguous(), lse.float(), None, None, None

    def _flash_attn_bwd(self, q, k, v, out, dout, lse, causal, window_size_left):
        assert causal
        self.calls["bwd"] += 1
        q, k, v, out, dout = (t.transpose(1, 2) for t in (q, k, v, out, dout))
        probs, _ = self._probs(q, k, window_size_left)
        dscores = probs * (dout @ v.mT - (dout * out).sum(-1, keepdim=True))
        scale = q.size(-1) ** -0.5
        dq, dk, dv = scale * dscores @ k, scale * dscores.mT @ q, probs.mT @ dout
        return tuple(t.transpose(1, 2).contiguous() for t in (dq, dk, dv))


@pytest.mark.slow
@pytest.mark.parametrize("window", [4, 16])
def test_flash_attention_4_op_computes_the_same_attention_and_gradients(monkeypatch, window):
    kernels = ReferenceFlashAttention4()
    q, k, v = (torch.randn(2, 16, 2, 8, dtype=torch.float64, requires_grad=True)
               for _ in range(3))

    def loss_and_grads(fn):
        out = fn(q, k, v)
        return (out, *torch.autograd.grad((out * torch.linspace(-1, 1, 8)).sum(), (q, k, v)))

    expected = loss_and_grads(lambda q, k, v: train.attention(q, k, v, window, None))
    # another copy of the harness in the process (as `sample` loads runs') registers the ops again
    spec = importlib.util.spec_from_file_location("harness_copy", REPO / "harness.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    monkeypatch.setitem(sys.modules, "flash_attn.cute.interface", kernels)
    monkeypatch.setattr(train, "flash_attention_4", True)
    # compiled as in training: the ops' fake versions stand in for them while tracing
    compiled = torch.compile(lambda q, k, v: train.attention(q, k, v, window, None),
                             backend="aot_eager", fullgraph=True)
    got = loss_and_grads(compiled)
    assert kernels.calls["fwd"] >= 1 and kernels.calls["bwd"] >= 1
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-10), (g - e).abs().max()
    torch.library.opcheck(torch.ops.autoresearch.fa4_fwd.default, (q, k, v, window - 1))


def test_attention_runs_the_live_op_after_another_copy_registers_it_again(monkeypatch):
    """Registering the ops again frees the ones this process's harness defined first; if another
    op takes the freed place before the new copy registers (CI once saw garbage there), a caller
    holding the first copy's op object reaches that other op. Attention must find the live op."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 8, 2, 4, requires_grad=True) for _ in range(3))
    expected = train.attention(q, k, v, 4, None)
    copy = importlib.util.spec_from_file_location("harness_copy", REPO / "harness.py")
    for name in ("autoresearch::fa4_fwd", "autoresearch::fa4_bwd"):  # what a new copy does first
        custom_ops.OPDEF_TO_LIB.pop(name)._destroy()
    for i in range(8):  # other ops defined meanwhile, as a loaded run's code may do
        torch.library.custom_op(f"autoresearch_test::filler_{i}_{id(q)}", mutates_args=(),
                                schema="(Tensor x) -> Tensor")(lambda x: x.clone())
    copy.loader.exec_module(importlib.util.module_from_spec(copy))
    kernels = ReferenceFlashAttention4()
    monkeypatch.setitem(sys.modules, "flash_attn.cute.interface", kernels)
    monkeypatch.setattr(train, "flash_attention_4", True)
    got = train.attention(q, k, v, 4, None)
    got.sum().backward()
    assert kernels.calls == {"fwd": 1, "bwd": 1}
    assert torch.allclose(got, expected, atol=1e-6)


def test_lr_schedule_holds_then_decays_to_the_final_fraction():
    assert train.lr_multiplier(0.0) == 1.0
    assert train.lr_multiplier(0.49) == 1.0
    assert train.lr_multiplier(0.75) == pytest.approx(0.5 + 0.5 * train.FINAL_LR_FRAC)
    assert train.lr_multiplier(1.0) == pytest.approx(train.FINAL_LR_FRAC)


def test_peak_flops_table_knows_the_common_gpus():
    names = {"NVIDIA H100 80GB HBM3": 989.5e12, "NVIDIA H100 PCIe": 756e12,
             "NVIDIA H200": 989.5e12, "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA L40S": 362.05e12,
             "NVIDIA GeForce RTX 4090": 165.2e12, "NVIDIA GeForce RTX 3090": 71e12}
    for name, flops in names.items():
        assert next(f for key, f in harness.PEAK_BF16_FLOPS if key in name) == flops, name


def parse_summary(stdout: str) -> dict[str, float]:
    lines = stdout.splitlines()
    block = lines[len(lines) - 1 - lines[::-1].index("---") + 1:]
    keys = [line.split(":")[0] for line in block]
    assert keys == SUMMARY_KEYS
    return {line.split(":")[0]: float(line.split(":")[1]) for line in block}


@pytest.mark.slow
def test_train_cpu_profile_end_to_end(prepared_cache, tmp_path):
    result = run_train(REPO, checkpoint_dir=tmp_path / "ckpt")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = parse_summary(result.stdout)
    assert math.isfinite(summary["val_bpb"]) and 0.5 < summary["val_bpb"] < 5.0
    assert summary["training_seconds"] >= train.TIME_BUDGET
    assert summary["total_seconds"] > summary["training_seconds"]
    assert summary["depth"] == 2 and summary["num_steps"] >= 2
    assert "profile: cpu" in result.stdout.splitlines()
    # nothing after the summary block: shutdown is clean (no leak reports, no tracebacks)
    assert result.stdout.rstrip().endswith("depth:            2")
    assert "leaked" not in result.stderr and "Traceback" not in result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert re.fullmatch(r"step \d{5} \(\d+\.\d%\) \| loss \d+\.\d{6} \| lrm \d\.\d\d \| "
                        r"dt \d+ms \| tok/s [\d,]+ \| mfu \d+\.\d% \| epoch \d+ \| "
                        r"remaining \d+s", steps[-1])
    # the percentage and the time left describe the same moment: after the step
    for line in steps:
        done, left = re.search(r"\((\d+\.\d)%\).*remaining (\d+)s", line).groups()
        assert float(done) / 100 * train.TIME_BUDGET + int(left) == pytest.approx(
            train.TIME_BUDGET, abs=0.6), line
    # the tokens of the tiny profile, with enough digits not to read 0.0
    tokens = summary["num_steps"] * train.TOTAL_BATCH_SIZE / 1e6
    assert summary["total_tokens_M"] > 0 and summary["total_tokens_M"] == pytest.approx(
        tokens, abs=1e-4)
    # the weights were saved before the final evaluation, loadable into the same model code
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["profile"] == "cpu" and config["num_steps"] == summary["num_steps"]
    model = train.GPT(train.GPTConfig(**config["model"]))
    model.load_state_dict(torch.load(tmp_path / "ckpt" / "model.pt"))


@pytest.mark.slow
def test_train_fails_fast_on_nan(prepared_cache, tmp_path):
    for name in ("train.py", "prepare.py", "constants.py", "harness.py"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "autoresearch", tmp_path / "autoresearch")
    source = (tmp_path / "train.py").read_text()
    assert "MATRIX_LR = 0.04" in source
    (tmp_path / "train.py").write_text(source.replace("MATRIX_LR = 0.04", "MATRIX_LR = 1e30"))
    result = run_train(tmp_path, timeout=120)
    assert result.returncode == 3
    assert re.search(r"^error: loss (is not finite|exploded)", result.stdout, re.M), result.stdout
    assert "\n---\n" not in result.stdout  # no summary block for a failed run
    assert "leaked" not in result.stderr  # a clean exit, even with the collector off


@pytest.mark.slow
def test_profiles_keep_the_batch_invariant_and_consumer_follows_the_top_constants(tmp_path):
    for name in ("prepare.py", "constants.py", "harness.py"):
        shutil.copy(REPO / name, tmp_path / name)
    source = (REPO / "train.py").read_text()
    assert "TOTAL_BATCH_SIZE = 2**19" in source
    (tmp_path / "train.py").write_text(source.replace("TOTAL_BATCH_SIZE = 2**19",
                                                      "TOTAL_BATCH_SIZE = 2**20"))
    probe = ("import train as t; print(t.TOTAL_BATCH_SIZE, t.DEVICE_BATCH_SIZE, "
             "t.TOTAL_BATCH_SIZE % (t.DEVICE_BATCH_SIZE * t.MAX_SEQ_LEN))")
    seen = {}
    for profile in ("h100", "consumer", "cpu"):
        for where in (REPO, tmp_path):
            out = subprocess.run([sys.executable, "-c", probe], cwd=where, capture_output=True,
                                 text=True, env={**os.environ, "AUTORESEARCH_PROFILE": profile})
            total, device_batch, remainder = map(int, out.stdout.split())
            assert remainder == 0 and device_batch >= 1, (profile, where)
            seen[profile, where == REPO] = total
    assert seen["h100", True] == 2**19 and seen["h100", False] == 2**20
    assert seen["consumer", True] == 2**17 and seen["consumer", False] == 2**18  # follows the top

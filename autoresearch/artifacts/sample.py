"""Generate text from a kept experiment's weights, with that experiment's own model code.

The agent rewrites train.py all night, so the GPT class in the repo today may not match weights
saved hours ago. Each run directory holds the exact train.py that produced its model.pt; we
import that copy under a unique module name (never running its training: train.py trains only
under `if __name__ == "__main__"`) with the repo root on sys.path for its `from prepare import`.

    python -m autoresearch.artifacts.sample runs/nov21/0007-abc1234 \
        --out runs/nov21/0007-abc1234/sample_output.txt
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from autoresearch.artifacts.checkpoints import repo_of
from autoresearch.errors import UserError
from autoresearch.redact import sanitize

if TYPE_CHECKING:
    import torch

DEFAULT_PROMPT = "The capital of France is"
DEFAULT_MAX_TOKENS = 64
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 40
DEFAULT_SEED = 42  # fixed, so samples of different experiments differ by the model alone
HARNESS_MODULES = ("prepare", "constants", "harness")  # what a train.py imports from the repo root
PROFILE_ENV = "AUTORESEARCH_PROFILE"


def load_run_module(run_dir: Path, repo: Path, profile: str | None = None) -> ModuleType:
    """Import run_dir/train.py as a fresh module, its harness imports resolved in `repo` and,
    if given, under the hardware profile it ran with (module-level constants may depend on it)."""
    source = run_dir / "train.py"
    if not source.is_file():
        raise UserError(f"{run_dir} has no train.py copy: is it a run dir "
                        f"(runs/<tag>/<n>-<commit>)?")
    root = str(repo.resolve())
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    for name in HARNESS_MODULES:  # never reuse a harness imported from elsewhere or another profile
        sys.modules.pop(name, None)
    digest = hashlib.sha1(str(source.resolve()).encode() + source.read_bytes()).hexdigest()[:12]
    name = f"autoresearch_run_{digest}"
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here while the class is built
    try:
        with _env(PROFILE_ENV, profile):
            spec.loader.exec_module(module)
            importlib.import_module("prepare")
    except SystemExit as e:  # the harness exits with a one-line message (e.g. a bad profile)
        del sys.modules[name]
        raise UserError(f"importing {source} failed: {e}") from None
    except Exception as e:
        del sys.modules[name]
        raise UserError(f"importing {source} failed: {type(e).__name__}: {e}") from e
    return module


@contextmanager
def _env(key: str, value: str | None):
    old = os.environ.get(key)
    if value:
        os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def load_model(run_dir: Path, device: str, repo: Path | None = None):
    """(model, tokenizer, sequence_len) of a run directory, the model in eval mode on `device`."""
    import torch  # here, not at the top: `agent_loop.py --help` should not wait for torch

    run_dir = Path(run_dir)
    repo = Path(repo) if repo else repo_of(run_dir)
    weights, config_path = run_dir / "model.pt", run_dir / "config.json"
    if not weights.is_file():
        raise UserError(f"{run_dir} has no model.pt: only kept experiments keep weights, and "
                        "older ones are pruned (see the loop's --keep-checkpoints)")
    if not config_path.is_file():
        raise UserError(f"{run_dir} has model.pt but no config.json: the checkpoint is incomplete")
    config = json.loads(config_path.read_text())
    module = load_run_module(run_dir, repo, config.get("profile"))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}  # torch.compile prefix
    try:
        model = module.GPT(module.GPTConfig(**config["model"]))
        model.load_state_dict(state)
    except (TypeError, RuntimeError) as e:
        detail = sanitize(str(e), 240)  # torch's message spans lines: the CLI shows one
        raise UserError(f"{weights} does not fit the GPT of its train.py: {detail}") from e
    model.to(device).eval()
    tokenizer = sys.modules["prepare"].Tokenizer.from_directory()
    return model, tokenizer, config["model"].get("sequence_len")


def generate(
    model: torch.nn.Module,
    prompt_ids: list[int],
    max_tokens: int,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int | None = DEFAULT_TOP_K,
    sequence_len: int | None = None,
    vocab_size: int | None = None,
    stop_id: int | None = None,
    seed: int = DEFAULT_SEED,
) -> list[int]:
    """New token ids after `prompt_ids`; temperature 0 is greedy. No KV cache: the context is
    re-run every step, cropped to the model's sequence_len."""
    import torch

    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    bf16 = device.type == "cuda"  # as in training: bf16 autocast on the GPU, float32 elsewhere
    ids, new = list(prompt_ids), []
    for _ in range(max_tokens):
        context = ids[-sequence_len:] if sequence_len else ids
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(torch.tensor([context], device=device))[0, -1].float()
        if vocab_size:  # the embedding may be padded beyond the tokenizer's ids
            logits = logits[:vocab_size]
        if temperature <= 0:
            token = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        if token == stop_id:  # BOS starts a new document: the sample is over
            break
        ids.append(token)
        new.append(token)
    return new


def pick_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is visible here; use --device cpu")
    return device


def sample_run(
    run_dir: Path,
    prompt: str = DEFAULT_PROMPT,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int | None = DEFAULT_TOP_K,
    seed: int = DEFAULT_SEED,
    device: str | None = None,
    repo: Path | None = None,
) -> str:
    """The prompt followed by the model's continuation, as text."""
    model, tokenizer, sequence_len = load_model(run_dir, pick_device(device), repo)
    bos = tokenizer.get_bos_token_id()
    prompt_ids = [bos] + tokenizer.encode(prompt)
    vocab_size = tokenizer.get_vocab_size() if hasattr(tokenizer, "get_vocab_size") else None
    new = generate(model, prompt_ids, max_tokens, temperature=temperature, top_k=top_k,
                   sequence_len=sequence_len, vocab_size=vocab_size, stop_id=bos, seed=seed)
    return tokenizer.decode(prompt_ids[1:] + new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autoresearch.artifacts.sample",
        description="Generate text from a run directory's model.pt with its own train.py.")
    parser.add_argument("run_dir", type=Path,
                        help="runs/<tag>/<n>-<commit>/ with model.pt, config.json")
    parser.add_argument("--out", type=Path, help="write the text here (default: print it)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="0 = no top-k cut")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--device", default=None, help="cuda, cpu, mps (default: cuda if present)")
    args = parser.parse_args(argv)
    try:
        text = sample_run(args.run_dir, args.prompt, max_tokens=args.max_tokens,
                          temperature=args.temperature, top_k=args.top_k or None, seed=args.seed,
                          device=args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sampling loads a run's weights with THAT run's train.py, never the repo's current one.

The toy model below is built so that its greedy output is known: token t is always followed by
t + 1, so the prompt "abc" continues "defg...". The checkpoint is written by the test itself.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from autoresearch.artifacts.sample import HARNESS_MODULES, load_run_module, sample_run
from autoresearch.errors import UserError
from autoresearch.review.review_cli import register

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def own_harness_after(monkeypatch):
    """Loading a run puts its repository first on sys.path and its prepare/harness in
    sys.modules, as the `sample` process needs; here the process goes on with other tests, and
    one that imported the real harness afterwards got a test repository's prepare.py."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = {name: sys.modules.get(name) for name in HARNESS_MODULES}
    yield
    for name, module in before.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module

# A byte-level tokenizer with BOS = 256: the harness API train.py and sample.py rely on.
PREPARE = '''
class Tokenizer:
    @classmethod
    def from_directory(cls):
        return cls()

    def get_vocab_size(self):
        return 257

    def get_bos_token_id(self):
        return 256

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
'''

TRAIN_V1 = '''
"""A train.py-like module: GPTConfig, GPT, and training only under __main__."""
from dataclasses import dataclass

import torch
import torch.nn as nn

from prepare import Tokenizer  # noqa: F401  (every real train.py imports the harness)


@dataclass
class GPTConfig:
    sequence_len: int = 8
    vocab_size: int = 257


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.vocab_size)
        self.head = nn.Linear(config.vocab_size, config.vocab_size, bias=False)

    def forward(self, idx):
        assert idx.size(1) <= self.config.sequence_len, "context longer than sequence_len"
        return self.head(self.wte(idx)).float()


if __name__ == "__main__":
    raise SystemExit("sampling must never run training")
'''

# What the agent made of train.py later: other parameter names, so v1 weights cannot load in it.
TRAIN_V2 = TRAIN_V1.replace("self.wte", "self.tok_emb").replace("self.head", "self.lm_head")


def successor_weights() -> dict:
    """wte = identity, head maps token t to logit 10 at t + 1: greedy counts upwards."""
    eye = torch.eye(257)
    head = torch.zeros(257, 257)
    head[torch.arange(1, 256), torch.arange(0, 255)] = 10.0
    return {"wte.weight": eye, "head.weight": head}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "prepare.py").write_text(PREPARE)
    (tmp_path / "train.py").write_text(TRAIN_V2)  # the repo has moved on since run 3
    run_dir = tmp_path / "runs" / "0003-abc1234"
    run_dir.mkdir(parents=True)
    (run_dir / "train.py").write_text(TRAIN_V1)
    torch.save(successor_weights(), run_dir / "model.pt")
    (run_dir / "config.json").write_text(json.dumps(
        {"model": {"sequence_len": 4, "vocab_size": 257}, "profile": "cpu"}))
    return tmp_path


def test_greedy_sample_uses_the_run_dirs_train_py(repo):
    # 12 new tokens with sequence_len 4: the context must be cropped or the model asserts
    text = sample_run(repo / "runs" / "0003-abc1234", "abc", max_tokens=12, temperature=0,
                      device="cpu")
    assert text == "abcdefghijklmno"
    # the repo's current train.py cannot load these weights: proof the copy was used
    v2 = load_run_module(repo, repo)
    model = v2.GPT(v2.GPTConfig(sequence_len=4))
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(successor_weights())


def test_temperature_and_top_k(repo):
    run = repo / "runs" / "0003-abc1234"
    # top-k 1 is greedy whatever the temperature
    assert sample_run(run, "x", max_tokens=2, temperature=5.0, top_k=1, device="cpu") == "xyz"
    a = sample_run(run, "a", max_tokens=20, temperature=50.0, top_k=None, seed=1, device="cpu")
    b = sample_run(run, "a", max_tokens=20, temperature=50.0, top_k=None, seed=1, device="cpu")
    c = sample_run(run, "a", max_tokens=20, temperature=50.0, top_k=None, seed=2, device="cpu")
    assert a == b != c  # seeded: reproducible, and really sampling at a high temperature


@pytest.mark.slow
def test_module_entry_point_writes_sample_output(repo):
    """What the loop runs after a keep, in a fresh interpreter started in the real checkout
    (whose own prepare.py must not shadow the run's repo)."""
    run = repo / "runs" / "0003-abc1234"
    out = run / "sample_output.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "autoresearch.artifacts.sample", str(run), "--out", str(out),
         "--prompt", "hi", "--max-tokens", "3", "--temperature", "0", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "hijkl\n"
    (run / "model.pt").unlink()
    proc = subprocess.run([sys.executable, "-m", "autoresearch.artifacts.sample", str(run)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "no model.pt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_sample_command(repo):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    for ref in ("3", "abc1", "0003-abc1234", str(repo / "runs" / "0003-abc1234")):
        result = runner.invoke(app, ["sample", ref, "--prompt", "ab", "--max-tokens", "4",
                                     "--temperature", "0", "--device", "cpu", "--repo", str(repo)])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "abcdef"
    result = runner.invoke(app, ["sample", "7", "--repo", str(repo)])
    assert isinstance(result.exception, UserError) and "no run matches" in str(result.exception)


def test_broken_train_py_is_a_user_error(repo):
    run = repo / "runs" / "0003-abc1234"
    (run / "train.py").write_text("def broken(:\n")
    with pytest.raises(UserError, match="importing .*train.py failed: SyntaxError"):
        sample_run(run, "a", max_tokens=1, device="cpu")


def test_weights_that_do_not_fit_are_a_user_error(repo):
    run = repo / "runs" / "0003-abc1234"
    (run / "train.py").write_text(TRAIN_V2)  # as if the copy were of the wrong code
    with pytest.raises(UserError, match=r"model.pt does not fit the GPT of its train.py: .*Miss"):
        sample_run(run, "a", max_tokens=1, device="cpu")


def test_each_repo_gets_its_own_harness_module(tmp_path, monkeypatch):
    """harness.py is imported afresh from the repository sampled, as prepare.py is: never the
    copy that another repository (or profile) left in sys.modules."""
    modules = []
    for name in ("one", "two"):
        repo = tmp_path / name
        run_dir = repo / "runs" / "0001-abc1234"
        run_dir.mkdir(parents=True)
        (repo / "prepare.py").write_text(PREPARE)
        (repo / "harness.py").write_text(f"WHERE = {name!r}\n")
        (run_dir / "train.py").write_text(TRAIN_V1 + "\nfrom harness import WHERE  # noqa\n")
        modules.append(load_run_module(run_dir, repo))
    assert [m.WHERE for m in modules] == ["one", "two"]

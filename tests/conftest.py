"""Shared fixtures: a small prepared data set (real text from the repository's demo corpus, or
from $AUTORESEARCH_TEST_CORPUS for larger data) on the cpu profile.

constants.py reads its environment at import, so the profile and the cache directory are set here,
before any test module imports the harness.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "autoresearch" / "demo_corpus"
CORPUS = Path(os.environ.get("AUTORESEARCH_TEST_CORPUS", DEMO_CORPUS))
# Real results.tsv files that the review tools must read as they are (see tests/data/README.md).
DATA = REPO / "tests" / "data"

# One cache for the whole session; tests that need a different one pass env to a subprocess.
SESSION_CACHE = Path(tempfile.mkdtemp(prefix="autoresearch-test-cache-"))
atexit.register(shutil.rmtree, SESSION_CACHE, ignore_errors=True)  # each run left ~6 MB in /tmp
os.environ["AUTORESEARCH_PROFILE"] = "cpu"
os.environ["AUTORESEARCH_CACHE"] = str(SESSION_CACHE)
os.environ.pop("AUTORESEARCH_DEVICE", None)
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # its note would be an extra line in CLI output

TRAIN_DOCS_PER_SHARD = 600
VAL_DOCS = 150
TOKENIZER_CHARS = 3_000_000


def corpus_shards() -> list[Path]:
    shards = sorted(CORPUS.glob("shard_*.parquet"))
    if len(shards) < 2:
        pytest.fail(f"no test corpus: expected parquet shards in {CORPUS} "
                    "(AUTORESEARCH_TEST_CORPUS names another one)")
    return shards


def write_mini_corpus(directory: Path) -> Path:
    """Two small train shards and a validation shard cut from the test corpus (val stays val)."""
    directory.mkdir(parents=True, exist_ok=True)
    shards = corpus_shards()
    picks = [(shards[0], TRAIN_DOCS_PER_SHARD), (shards[1], TRAIN_DOCS_PER_SHARD),
             (shards[-1], VAL_DOCS)]
    for i, (src, n) in enumerate(picks):
        texts = pq.ParquetFile(src).read_row_group(0, columns=["text"]).column("text")
        pq.write_table(pa.table({"text": texts.slice(0, n)}), directory / f"part_{i}.parquet",
                       row_group_size=256)
    return directory


def run_prepare(cache: Path, *args: str, env: dict | None = None,
                preexec_fn=None) -> subprocess.CompletedProcess:
    """The real `prepare.py` in a subprocess, preparing into `cache`."""
    full_env = {**os.environ, "AUTORESEARCH_CACHE": str(cache), **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "prepare.py"), *args], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=300,
                          preexec_fn=preexec_fn)


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory) -> Path:
    return write_mini_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def prepared_cache(mini_corpus) -> Path:
    """SESSION_CACHE with data and tokenizer prepared by the real `prepare.py --source`."""
    result = run_prepare(SESSION_CACHE, "--source", str(mini_corpus),
                         "--tokenizer-chars", str(TOKENIZER_CHARS))
    assert result.returncode == 0, result.stdout + result.stderr
    return SESSION_CACHE


HARNESS = ["train.py", "prepare.py", "constants.py", "harness.py", "program.md", "pyproject.toml",
           ".gitignore"]


def make_project(folder: Path) -> Path:
    """A fresh git repository holding this project's harness and package, on branch main."""
    folder.mkdir(parents=True)
    for name in HARNESS:
        shutil.copy(REPO / name, folder / name)
    shutil.copytree(REPO / "autoresearch", folder / "autoresearch",  # the data stays here
                    ignore=shutil.ignore_patterns("__pycache__", "demo_corpus"))
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "test@example.com"],
                 ["config", "user.name", "Test"], ["add", "-A"], ["commit", "-q", "-m", "harness"]):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)
    return folder


def run_train(repo: Path, checkpoint_dir: Path | None = None, timeout: float = 240,
              ) -> subprocess.CompletedProcess:
    """`train.py` of `repo` on the cpu profile against the prepared session cache."""
    env = {**os.environ, "AUTORESEARCH_PROFILE": "cpu", "AUTORESEARCH_CACHE": str(SESSION_CACHE)}
    if checkpoint_dir is not None:
        env["AUTORESEARCH_CHECKPOINT_DIR"] = str(checkpoint_dir)
    return subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=timeout)

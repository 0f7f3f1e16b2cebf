"""prepare.py: tokenizer, token byte lengths, dataloader invariants, the metric, local data,
downloads through the real CLI against a loopback server, and the offline message."""

import functools
import json
import math
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import (
    DEMO_CORPUS,
    REPO,
    TRAIN_DOCS_PER_SHARD,
    VAL_DOCS,
    corpus_shards,
    run_prepare,
)

import prepare
from autoresearch.execution.procs import pid_alive
from constants import SPECIAL_TOKENS, VOCAB_SIZE


@pytest.fixture(scope="module")
def tokenizer(prepared_cache):
    return prepare.Tokenizer.from_directory()


def val_texts() -> list[str]:
    return pq.read_table(prepare.shard_paths("val")[0]).column("text").to_pylist()


# ---------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip_on_real_text(tokenizer):
    assert tokenizer.get_vocab_size() == VOCAB_SIZE
    for text in val_texts()[:50]:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert len(ids) < len(text.encode("utf-8")) / 2  # it really merged something
    batch = tokenizer.encode(val_texts()[:8], prepend=tokenizer.get_bos_token_id())
    assert all(row[0] == tokenizer.get_bos_token_id() for row in batch)
    assert tokenizer.decode(batch[0][1:]) == val_texts()[0]


def test_special_tokens_are_reserved_at_the_top(tokenizer):
    ids = [tokenizer.enc.encode_single_token(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(VOCAB_SIZE - len(SPECIAL_TOKENS), VOCAB_SIZE))
    assert tokenizer.get_bos_token_id() == ids[0]
    # ordinary text never produces them, even when it spells one out
    assert tokenizer.get_bos_token_id() not in tokenizer.encode("<|reserved_0|> hi")


def test_token_byte_lengths_sum_to_the_utf8_length(tokenizer):
    token_bytes = prepare.get_token_bytes()
    assert token_bytes.shape == (VOCAB_SIZE,) and token_bytes.dtype == torch.int32
    assert token_bytes[tokenizer.get_bos_token_id()] == 0
    assert (token_bytes[: VOCAB_SIZE - len(SPECIAL_TOKENS)] > 0).all()
    for text in val_texts()[:20] + ["naïve café, 你好 ∑"]:
        ids = torch.tensor(tokenizer.encode(text))
        assert token_bytes[ids].sum().item() == len(text.encode("utf-8"))


# ---------------------------------------------------------------------------- dataloader


def document_tokens(tokenizer, split: str) -> set[tuple[int, ...]]:
    texts = []
    for path in prepare.shard_paths(split):
        texts += pq.read_table(path).column("text").to_pylist()
    return {tuple(ids) for ids in tokenizer.encode(texts, prepend=tokenizer.get_bos_token_id())}


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "val"])
def test_dataloader_packs_whole_documents_bos_first_no_padding(tokenizer, split):
    B, T = 4, 256
    docs = document_tokens(tokenizer, split)
    prefixes = {doc[:n] for doc in docs for n in range(1, min(len(doc), T + 1) + 1)}
    bos = tokenizer.get_bos_token_id()
    loader = prepare.make_dataloader(tokenizer, B, T, split, buffer_size=64, device="cpu")
    for _ in range(6):
        x, y, epoch = next(loader)
        assert x.shape == y.shape == (B, T) and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
        assert (x[:, 0] == bos).all()
        for row in torch.cat([x, y[:, -1:]], dim=1).tolist():
            starts = [i for i, t in enumerate(row) if t == bos] + [len(row)]
            pieces = [tuple(row[a:b]) for a, b in zip(starts, starts[1:], strict=False)]
            assert all(p in prefixes for p in pieces)  # nothing but real documents, no padding
            assert all(p in docs for p in pieces[:-1])  # only the row's last piece may be cropped
        assert epoch >= 1


@pytest.mark.slow
def test_dataloader_is_deterministic(tokenizer):
    a = prepare.make_dataloader(tokenizer, 3, 128, "train", device="cpu")
    b = prepare.make_dataloader(tokenizer, 3, 128, "train", device="cpu")
    for _ in range(5):
        xa, ya, _ = next(a)
        xb, yb, _ = next(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_training_batches_come_whole_from_the_packer_process(tokenizer):
    B, T = 4, 256
    expected = prepare._packed_rows("train", tokenizer, B, T, buffer_size=64)
    loader = prepare.make_dataloader(tokenizer, B, T, "train", buffer_size=64, device="cpu")
    [packer] = prepare._PACKERS
    assert not any(t.name == "dataloader" for t in threading.enumerate())  # no packing thread here
    for _ in range(40):  # a few hundred rows: several header + rows records through the pipe
        x, y, epoch = next(loader)
        rows, expected_epoch = next(expected)
        assert torch.equal(torch.cat([x, y[:, -1:]], dim=1), torch.from_numpy(rows).long())
        assert epoch == expected_epoch
    loader.close()
    assert packer.poll() is not None and prepare._PACKERS == []  # closing stops the process



def test_the_packer_and_prepares_commands_start_without_torch():
    # the packer process imports prepare for each run's training data, and every prepare.py
    # command does too: torch (1-1.5 s) loads only where a tensor is made
    script = "import sys, prepare; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"

@pytest.mark.slow
def test_packer_process_exits_quietly_when_its_reader_dies(tmp_path):
    # the loop kills a timed-out run's process group; a reader killed alone must not leave the
    # packer running, nor make it print a traceback into the run's log
    script = ("import sys, time, prepare\n"
              "loader = prepare.make_dataloader(prepare.Tokenizer.from_directory(), 2, 64, "
              "'train', buffer_size=16, device='cpu')\n"
              "next(loader)\n"
              "print(prepare._PACKERS[0].pid, flush=True)\n"
              "time.sleep(120)\n")
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        reader = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=err, text=True)
        packer_pid = int(reader.stdout.readline())
        reader.kill()
        reader.wait()
        deadline = time.time() + 30
        while pid_alive(packer_pid) and time.time() < deadline:
            time.sleep(0.1)
    assert not pid_alive(packer_pid)
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_a_failing_packer_is_a_one_line_error(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path))  # the child finds no data there
    loader = prepare.make_dataloader(tokenizer, 2, 64, "train", device="cpu")
    with pytest.raises(SystemExit, match="data loader process stopped"):
        next(loader)


def test_dataloader_cycles_epochs(tokenizer):
    loader = prepare.make_dataloader(tokenizer, 8, 256, "val", buffer_size=16, device="cpu")
    epochs = [next(loader)[2] for _ in range(120)]  # ~150 val docs: a few passes
    assert epochs[0] == 1 and max(epochs) >= 2 and epochs == sorted(epochs)


def test_validation_tokens_are_cached_once_and_identical(tokenizer):
    from constants import TOKENIZER_DIR

    cache = TOKENIZER_DIR / prepare.VAL_TOKENS_FILE
    cache.unlink(missing_ok=True)
    fresh = list(prepare._tokenized_shard(prepare.shard_paths("val")[0], tokenizer))
    built = prepare._validation_documents(tokenizer)
    assert cache.exists()
    stamp = cache.stat().st_mtime_ns
    loaded = prepare._validation_documents(tokenizer)
    assert cache.stat().st_mtime_ns == stamp  # read, not rebuilt
    assert len(fresh) == len(built) == len(loaded) == VAL_DOCS
    for a, b, c in zip(fresh, built, loaded, strict=True):
        assert a.tolist() == b.tolist() == c.tolist()


def test_validation_shard_is_never_training_data(prepared_cache):
    manifest = prepare.read_manifest()
    assert manifest["val"] not in manifest["train"]
    assert len(manifest["train"]) == 2
    train = document_tokens_texts(prepare.shard_paths("train"))
    assert not train & document_tokens_texts(prepare.shard_paths("val"))


def document_tokens_texts(paths) -> set[str]:
    return {t for p in paths for t in pq.read_table(p).column("text").to_pylist()}


# ---------------------------------------------------------------------------- the metric


class ConstantLoss(torch.nn.Module):
    """A model whose per-token loss is known: uniform logits give ln(vocab) nats per token."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, y, reduction="mean"):
        logits = torch.zeros(*x.shape, self.vocab) + self.dummy
        return torch.nn.functional.cross_entropy(logits.view(-1, self.vocab), y.reshape(-1),
                                                 reduction=reduction)


def test_evaluate_bpb_of_uniform_logits_matches_hand_computation(tokenizer):
    from constants import EVAL_TOKENS, MAX_SEQ_LEN

    batch = 4
    bpb = prepare.evaluate_bpb(ConstantLoss(VOCAB_SIZE), tokenizer, batch)
    # by hand: every non-special target costs ln(V) nats; bytes are the targets' UTF-8 lengths
    token_bytes = prepare.get_token_bytes()
    loader = prepare.make_dataloader(tokenizer, batch, MAX_SEQ_LEN, "val", device="cpu")
    counted, nbytes = 0, 0
    for _ in range(EVAL_TOKENS // (batch * MAX_SEQ_LEN)):
        _, y, _ = next(loader)
        lengths = token_bytes[y]
        counted += int((lengths > 0).sum())
        nbytes += int(lengths.sum())
    expected = counted * math.log(VOCAB_SIZE) / (math.log(2) * nbytes)
    assert bpb == pytest.approx(expected, rel=1e-6)  # fp32 per-token losses
    assert 2.0 < bpb < 5.0  # ~13 bits per token over ~4 bytes per token


def test_evaluate_bpb_rewards_a_better_model(tokenizer):
    class Unigram(ConstantLoss):  # knows token frequencies: must beat uniform
        def __init__(self, counts):
            super().__init__(len(counts))
            self.logp = torch.log((counts + 1) / (counts + 1).sum())

        def forward(self, x, y, reduction="mean"):
            return -self.logp[y].reshape(-1) + self.dummy

    counts = torch.zeros(VOCAB_SIZE)
    for text in val_texts()[:100]:
        counts += torch.bincount(torch.tensor(tokenizer.encode(text)), minlength=VOCAB_SIZE)
    uniform = prepare.evaluate_bpb(ConstantLoss(VOCAB_SIZE), tokenizer, 4)
    assert prepare.evaluate_bpb(Unigram(counts), tokenizer, 4) < uniform - 0.5


# ---------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_prepare_from_local_parquet_end_to_end(tmp_path, mini_corpus):
    cache = tmp_path / "cache"
    first = run_prepare(cache, "--source", str(mini_corpus), "--tokenizer-chars", "1000000")
    assert first.returncode == 0, first.stderr
    manifest = json.loads((cache / "data" / "dataset.json").read_text())
    assert manifest == {"source": str(mini_corpus), "train": ["shard_00000.parquet",
                        "shard_00001.parquet"], "val": "shard_00002.parquet",
                        "private": "private.parquet"}
    assert pq.read_table(cache / "data" / "shard_00002.parquet").num_rows == VAL_DOCS
    assert (cache / "tokenizer" / "tokenizer.pkl").exists()
    again = run_prepare(cache, "--source", str(mini_corpus), "--tokenizer-chars", "1000000")
    assert again.returncode == 0 and "already trained" in again.stdout
    other = run_prepare(cache, "--source", str(corpus_shards()[0].parent))
    assert other.returncode == 1
    assert "already holds data prepared from" in other.stderr and "--force" in other.stderr
    assert "Traceback" not in other.stderr


@pytest.mark.slow
def test_local_parquet_is_copied_and_leaves_no_temporary_files(tmp_path, mini_corpus):
    """The cache holds copies: writing to a cache shard never writes to the user's data, and
    preparing again (the same source, --force) leaves no `*.tmp` behind."""
    cache = tmp_path / "cache"
    for extra in ([], ["--force"]):
        result = run_prepare(cache, "--source", str(mini_corpus), "--tokenizer-chars", "200000",
                             *extra)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in cache.rglob("*.tmp")) == []
    sources = sorted(mini_corpus.glob("*.parquet"))
    shards = sorted((cache / "data").glob("shard_*.parquet"))
    before = [src.read_bytes() for src in sources]
    held_back = shards[-2]  # the last training shard: shortened by the private split's documents
    for src, shard, data in zip(sources, shards, before, strict=True):
        assert not shard.samefile(src)
        assert (shard.read_bytes() == data) is (shard != held_back)
        with open(shard, "ab") as f:
            f.write(b"an agent appends to the cache")
    assert [src.read_bytes() for src in sources] == before


def _file_size_limit(limit: int):
    """For preexec_fn: writes past `limit` bytes fail with EFBIG, as on a full disk."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("kind, limit, fails", [
    ("parquet", 100_000, "data/shard_00000.parquet"),  # a copy of the user's file
    pytest.param("jsonl", 100_000, "data/shard_00000.parquet",  # a shard written from text
                 marks=pytest.mark.slow),
    pytest.param("small jsonl", 15_000, "tokenizer/tokenizer.pkl",  # the shards fit, the
                 marks=pytest.mark.slow),  # tokenizer not
])
def test_a_file_that_cannot_be_written_is_one_line_and_leaves_no_temporary_file(
        tmp_path, mini_corpus, kind, limit, fails):
    source = mini_corpus
    if kind != "parquet":
        source = tmp_path / "text"
        source.mkdir()
        texts = pq.read_table(mini_corpus / "part_0.parquet").column("text").to_pylist()
        if kind == "small jsonl":
            texts = [t[:300] for t in texts[:40]]
        (source / "docs.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    cache = tmp_path / "cache"
    result = run_prepare(cache, "--source", str(source), preexec_fn=_file_size_limit(limit))
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: cannot write {cache / fails}")
    assert "File too large" in errors[0]
    assert sorted(p.name for p in cache.rglob("*.tmp")) == []
    assert not (cache / fails).exists()


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    from autoresearch.local_data import written_atomically

    shard = tmp_path / "shard_00000.parquet"
    shard.write_bytes(b"the old shard")
    with pytest.raises(KeyboardInterrupt), written_atomically(shard) as tmp:
        tmp.write_bytes(b"half of the new")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard_00000.parquet"]
    assert shard.read_bytes() == b"the old shard"


def test_the_demo_corpus_prepares_offline(tmp_path):
    """`prepare.py --demo` needs nothing but the repository: no network, no folder beside it."""
    result = run_prepare(tmp_path / "cache", "--demo", "--tokenizer-chars", "300000",
                         env={"AUTORESEARCH_DATA_URL": "http://127.0.0.1:9"})  # nothing there
    assert result.returncode == 0, result.stderr
    data = tmp_path / "cache" / "data"
    assert json.loads((data / "dataset.json").read_text()) == {
        "source": str(DEMO_CORPUS), "train": ["shard_00000.parquet", "shard_00001.parquet"],
        "val": "shard_00002.parquet", "private": "private.parquet"}
    assert (tmp_path / "cache" / "tokenizer" / "tokenizer.pkl").exists()
    demo_val = pq.read_table(DEMO_CORPUS / "shard_00002.parquet").column("text").to_pylist()
    assert pq.read_table(data / "shard_00002.parquet").column("text").to_pylist() == demo_val
    assert len(demo_val) >= VAL_DOCS  # enough for what the tests cut from it


def test_prepare_from_txt_and_jsonl(tmp_path, mini_corpus):
    texts = pq.read_table(mini_corpus / "part_0.parquet").column("text").to_pylist()[:60]
    src = tmp_path / "src"
    src.mkdir()
    for i, text in enumerate(texts[:30]):
        (src / f"doc_{i:03d}.txt").write_text(text)
    (src / "more.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts[30:]))
    cache = tmp_path / "cache"
    result = run_prepare(cache, "--source", str(src), "--tokenizer-chars", "200000")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((cache / "data" / "dataset.json").read_text())
    val = pq.read_table(cache / "data" / manifest["val"]).column("text").to_pylist()
    train = [t for name in manifest["train"]
             for t in pq.read_table(cache / "data" / name).column("text").to_pylist()]
    private = pq.read_table(cache / "private" / manifest["private"]).column("text").to_pylist()
    assert len(val) == 3 and len(train) == 54  # last 5% of documents in file order
    assert val == texts[-3:] and not set(val) & set(train)
    assert private == texts[-6:-3]  # held back from the end of the training text

    (src / "bad.jsonl").write_text('{"txt": "no text field"}\n')
    bad = run_prepare(tmp_path / "cache2", "--source", str(src))
    assert bad.returncode == 1 and 'bad.jsonl:1 is not a JSON object with a "text" field' in \
        bad.stderr and "Traceback" not in bad.stderr


def serve_directory(directory: Path) -> ThreadingHTTPServer:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_prepare_downloads_shards_and_pinned_validation_from_a_server(tmp_path, mini_corpus):
    hub = tmp_path / "hub"
    hub.mkdir()
    for i, name in enumerate(["shard_00000", "shard_00001", "shard_06542"]):
        (hub / f"{name}.parquet").write_bytes((mini_corpus / f"part_{i}.parquet").read_bytes())
    (hub / "shard_06541.parquet").write_bytes((mini_corpus / "part_2.parquet").read_bytes())
    (hub / "shard_00002.parquet").write_bytes(b"must not be fetched with --num-shards 2")
    server = serve_directory(hub)
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        result = run_prepare(tmp_path / "cache", "--num-shards", "2", "--tokenizer-chars",
                             "500000", env={"AUTORESEARCH_DATA_URL": url})
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    data = tmp_path / "cache" / "data"
    assert json.loads((data / "dataset.json").read_text())["val"] == "shard_06542.parquet"
    assert sorted(p.name for p in data.glob("*.parquet")) == [
        "shard_00000.parquet", "shard_00001.parquet", "shard_06542.parquet"]
    assert pq.read_table(data / "shard_00001.parquet").num_rows == TRAIN_DOCS_PER_SHARD
    assert [p.name for p in (tmp_path / "cache" / "private").glob("*.parquet")] == [
        "shard_06541.parquet"]  # the pinned private shard, outside the data directory


def test_prepare_offline_says_what_failed_and_how_to_use_local_data(tmp_path):
    import socket

    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_prepare(tmp_path / "cache", "--num-shards", "1",
                         env={"AUTORESEARCH_DATA_URL": f"http://127.0.0.1:{port}"})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach")
    assert "uv run prepare.py --demo" in errors[0] and "--source" in errors[0]


def test_runtime_without_prepared_data_is_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run([sys.executable, "train.py"], cwd=REPO, capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "AUTORESEARCH_PROFILE": "cpu",
                                            "AUTORESEARCH_CACHE": str(tmp_path / "empty")},
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: no tokenizer at")
    assert "uv run prepare.py" in result.stderr and "Traceback" not in result.stderr


def test_unknown_profile_is_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run([sys.executable, "-c", "import constants"], cwd=REPO,
                            capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "AUTORESEARCH_PROFILE": "h300"})
    assert result.returncode == 1
    assert "unknown AUTORESEARCH_PROFILE='h300'" in result.stderr and "cpu" in result.stderr


# ---------------------------------------------------------------------------- the demo corpus

def _fake_shared_corpus(folder: Path) -> dict[str, list[str]]:
    """Shards that mix encyclopedia articles (a line per paragraph) with book chunks (blank lines
    between paragraphs), as the shared corpus does; returns each shard's book chunks."""
    import pyarrow as pa

    folder.mkdir()
    books = {}
    for shard, count in (("shard_00000", 700), ("shard_00001", 700), ("shard_00002", 5),
                         ("shard_00003", 200)):
        article = [f"{shard} Article {i}\n\n" + "\n".join(["A line of facts."] * 6)
                   for i in range(count)]
        chunk = [f"{shard} chapter {i}.\n\n" + "\n\n".join(["Prose, re-flowed."] * 5)
                 for i in range(count)]
        rows = [text for pair in zip(article, chunk, strict=True) for text in pair]
        pq.write_table(pa.table({"text": rows}), folder / f"{shard}.parquet")
        books[shard] = chunk
    stats = {"gutenberg_books": [["lib/moby_dick.txt", "used", 1], ["lib/quijote.txt",
                                  "skipped (Spanish)", 0]],
             "repos": {"gutenberg": "someone/books@abc:lib/"}}
    (folder / "build_stats.json").write_text(json.dumps(stats))
    return books


def test_the_demo_corpus_builder_keeps_book_chunks_in_order_and_is_byte_for_byte(tmp_path):
    books = _fake_shared_corpus(tmp_path / "shared")

    def build(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "scripts/build-demo-corpus.py", "--corpus",
                               str(tmp_path / "shared"), *args], cwd=REPO, capture_output=True,
                              text=True, timeout=120)

    assert build("--out", str(tmp_path / "one")).returncode == 0
    assert build("--out", str(tmp_path / "two")).returncode == 0
    one, two = tmp_path / "one", tmp_path / "two"
    names = ["SOURCES.md", "shard_00000.parquet", "shard_00001.parquet", "shard_00002.parquet"]
    assert sorted(p.name for p in one.iterdir()) == names
    assert all((one / n).read_bytes() == (two / n).read_bytes() for n in names)
    texts = {n: pq.read_table(one / n).column("text").to_pylist() for n in names[1:]}
    assert texts["shard_00000.parquet"] == books["shard_00000"][:TRAIN_DOCS_PER_SHARD]
    assert texts["shard_00001.parquet"] == books["shard_00001"][:TRAIN_DOCS_PER_SHARD]
    assert texts["shard_00002.parquet"] == books["shard_00003"][:VAL_DOCS]  # the last is val
    sources = (one / "SOURCES.md").read_text()
    assert "moby dick" in sources and "quijote" not in sources and "someone/books@abc" in sources
    assert build("--out", str(one), "--check").returncode == 0
    (one / "shard_00002.parquet").write_bytes(b"stale")
    stale = build("--out", str(one), "--check")
    assert stale.returncode == 1 and "shard_00002.parquet" in stale.stderr

"""
One-time data preparation, and the fixed runtime that train.py imports.

    uv run prepare.py                         # download 10 train shards + the pinned val shard
    uv run prepare.py --num-shards 4          # fewer shards (quick start)
    uv run prepare.py --demo                  # the small corpus in this repository (offline)
    uv run prepare.py --source ~/corpus       # local parquet / .txt / .jsonl instead
    uv run prepare.py --private               # only the private held-out split, for old data

Then it trains the BPE tokenizer. Everything lands in ~/.cache/autoresearch/ (or
$AUTORESEARCH_CACHE); running it again skips what is already done.

The runtime half of this file (Tokenizer, make_dataloader, evaluate_bpb) is the ground truth of
every experiment: the agent never edits it, and the loop checks its hash before each run. Its
public names and signatures match karpathy/autoresearch's prepare.py, so train.py variants
written for that project run here unchanged.
"""

import argparse
import atexit
import bisect
import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

# torch is imported in the functions that use it: the data packer's child process and prepare's
# own commands then start without it (1-1.5 s each)
from constants import (
    BOS_TOKEN,
    DATA_DIR,
    DATASET_MANIFEST,
    DATASET_URL,
    EVAL_TOKENS,
    MAX_SEQ_LEN,
    MAX_SHARD,
    PROFILE,
    SPECIAL_TOKENS,
    SPLIT_PATTERN,
    TIME_BUDGET,
    TOKENIZER_DIR,
    VAL_SHARD,
    VOCAB_SIZE,
)

__all__ = [
    "MAX_SEQ_LEN", "TIME_BUDGET", "EVAL_TOKENS", "VOCAB_SIZE", "PROFILE",
    "Tokenizer", "get_token_bytes", "make_dataloader", "evaluate_bpb", "default_device",
]

# Compiled kernels persist across runs in the cache directory: the loop runs hundreds of
# near-identical programs, and a warm cache turns a minute of compilation into seconds.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(DATA_DIR.parent / "torch_compile"))
os.environ.setdefault("TRITON_CACHE_DIR", str(DATA_DIR.parent / "triton"))
_FA4_CACHE = DATA_DIR.parent / "flash_attention"  # FlashAttention-4's kernels (train.py, Hopper)
os.environ.setdefault("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", "1")
os.environ.setdefault("FLASH_ATTENTION_CUTE_DSL_CACHE_DIR", str(_FA4_CACHE))

TOKENIZER_FILE = "tokenizer.pkl"
TOKEN_BYTES_FILE = "token_bytes.pt"
TOKENIZER_META_FILE = "meta.json"
# The offline demo: a few MB of public-domain books carried by the repository (see its SOURCES.md).
DEMO_CORPUS = Path(__file__).resolve().parent / "autoresearch" / "demo_corpus"
VAL_TOKENS_FILE = "val_tokens.npz"  # the validation shard, tokenized (see _validation_documents)
# The private held-out split (README, Held-out verification): its own directory, which the loop
# hides from training runs, with its raw text and its tokens. Climbmix: a pinned shard that
# training never uses; local data: the last documents of the training text, held back.
PRIVATE_DIR = DATA_DIR.parent / "private"
PRIVATE_SHARD = VAL_SHARD - 1
PRIVATE_TOKENS_FILE = "private_tokens.npz"
DOC_CHAR_CAP = 10_000  # tokenizer training sees at most this many characters of each document


def _missing(what: str) -> SystemExit:
    # Expected fault, so one line and no traceback: SystemExit prints its message and exits 1.
    return SystemExit(f"error: {what}; run `uv run prepare.py` first (see README, Quick start)")


# ---------------------------------------------------------------------------
# The data set: which shards are train and which one is validation
# ---------------------------------------------------------------------------

def read_manifest() -> dict:
    """{"source": str, "train": [file names], "val": file name, "private": file name in
    PRIVATE_DIR (absent for data prepared before the private split)}, written when data is
    ready."""
    if not DATASET_MANIFEST.exists():
        raise _missing(f"no prepared data in {DATA_DIR}")
    return json.loads(DATASET_MANIFEST.read_text())


def shard_paths(split: str) -> list[Path]:
    assert split in ("train", "val"), split
    manifest = read_manifest()
    names = manifest["train"] if split == "train" else [manifest["val"]]
    return [DATA_DIR / name for name in names]


def write_manifest(source: str, train: list[str], val: str, private: str | None = None) -> None:
    assert val not in train, "the validation shard must never be used for training"
    assert private not in train, "the private split must never be used for training"
    manifest = {"source": source, "train": train, "val": val}
    if private is not None:
        manifest["private"] = private
    _atomic_write(DATASET_MANIFEST, json.dumps(manifest, indent=1).encode())


def _check_same_source(source: str, force: bool) -> None:
    """One cache directory holds one data set; never mix two silently."""
    if not DATASET_MANIFEST.exists() or force:
        return
    existing = read_manifest()["source"]
    if existing != source:
        raise SystemExit(
            f"error: {DATA_DIR} already holds data prepared from {existing}; use another cache "
            f"(AUTORESEARCH_CACHE=/path uv run prepare.py ...) or pass --force to replace it"
        )


def prepare_download(num_shards: int, workers: int, force: bool) -> None:
    from autoresearch.download import DownloadError, download_shards

    _check_same_source(DATASET_URL, force)
    num_train = min(num_shards, PRIVATE_SHARD)  # the shards before the private one
    train = [f"shard_{i:05d}.parquet" for i in range(num_train)]
    val = f"shard_{VAL_SHARD:05d}.parquet"
    print(f"Data: {num_train} train shards + validation {val} from {DATASET_URL}")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    try:
        download_shards(DATASET_URL, train + [val], DATA_DIR, workers=workers)
    except DownloadError as e:
        raise SystemExit(f"error: {e}") from None
    write_manifest(DATASET_URL, train, val, read_manifest().get("private")
                   if DATASET_MANIFEST.exists() else None)


def prepare_local(source: Path, force: bool) -> None:
    from autoresearch.local_data import LocalDataError, import_local

    source = source.expanduser().resolve()
    _check_same_source(str(source), force)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    try:
        train, val = import_local(source, DATA_DIR)
    except LocalDataError as e:
        raise SystemExit(f"error: {e}") from None
    write_manifest(str(source), train, val)  # a fresh import: the private slice is cut anew
    print(f"Data: {len(train)} train shards + validation {val} from {source}")


def prepare_private(workers: int) -> None:
    """Make the private held-out split once: disjoint from the training shards and validation,
    in PRIVATE_DIR, recorded in the manifest. Data prepared before it existed gets it here."""
    manifest = read_manifest()
    name = manifest.get("private")
    if name and (PRIVATE_DIR / name).is_file():
        return
    PRIVATE_DIR.mkdir(parents=True, exist_ok=True)
    if manifest["source"] == DATASET_URL:
        train, name = _private_shard(manifest["train"], workers)
    else:
        train, name = _private_slice(manifest["train"], manifest["val"])
    (PRIVATE_DIR / PRIVATE_TOKENS_FILE).unlink(missing_ok=True)  # another split's tokens
    write_manifest(manifest["source"], train, manifest["val"], name)
    print(f"Private split: {name} in {PRIVATE_DIR} (hidden from training runs)")


def _private_shard(train: list[str], workers: int) -> tuple[list[str], str]:
    """Climbmix: the pinned PRIVATE_SHARD, moved out of the data directory (and the training
    list) if an earlier `--num-shards -1` downloaded it as training data, else downloaded."""
    from autoresearch.download import DownloadError, download_shards

    name = f"shard_{PRIVATE_SHARD:05d}.parquet"
    if (DATA_DIR / name).is_file():
        os.replace(DATA_DIR / name, PRIVATE_DIR / name)
    else:
        try:
            download_shards(DATASET_URL, [name], PRIVATE_DIR, workers=workers)
        except DownloadError as e:
            raise SystemExit(f"error: {e}") from None
    return [t for t in train if t != name], name


def _private_slice(train: list[str], val: str) -> tuple[list[str], str]:
    """Local data: the last documents of the last training shard, held back."""
    from autoresearch.local_data import LocalDataError, hold_back

    try:
        return train, hold_back(DATA_DIR / train[-1], DATA_DIR / val, PRIVATE_DIR)
    except LocalDataError as e:
        raise SystemExit(f"error: {e}") from None


# ---------------------------------------------------------------------------
# Tokenizer training (rustbpe), saved as a tiktoken encoding
# ---------------------------------------------------------------------------

def iter_training_text(max_chars: int):
    """Documents of the train split only (the validation shard is never seen), capped."""
    nchars = 0
    for path in shard_paths("train"):
        pf = pq.ParquetFile(path)
        for rg in range(pf.num_row_groups):
            for text in pf.read_row_group(rg, columns=["text"]).column("text").to_pylist():
                doc = text[:DOC_CHAR_CAP]
                nchars += len(doc)
                yield doc
                if nchars >= max_chars:
                    return


def train_tokenizer(max_chars: int, force: bool) -> None:
    import rustbpe
    import tiktoken
    import torch
    from rich.progress import Progress

    source = read_manifest()["source"]
    meta_path = TOKENIZER_DIR / TOKENIZER_META_FILE
    if not force and meta_path.exists() and (TOKENIZER_DIR / TOKEN_BYTES_FILE).exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("source") == source and meta.get("vocab_size") == VOCAB_SIZE:
            print(f"Tokenizer: already trained at {TOKENIZER_DIR}")
            return
    TOKENIZER_DIR.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    with Progress(transient=True) as progress:
        task = progress.add_task("Tokenizer: reading text", total=max_chars)

        def texts():
            for doc in iter_training_text(max_chars):
                progress.advance(task, len(doc))
                yield doc

        bpe = rustbpe.Tokenizer()
        bpe.train_from_iterator(texts(), VOCAB_SIZE - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)

    mergeable_ranks = {bytes(k): v for k, v in bpe.get_mergeable_ranks()}
    offset = len(mergeable_ranks)
    enc = tiktoken.Encoding(
        name="autoresearch",
        pat_str=bpe.get_pattern(),
        mergeable_ranks=mergeable_ranks,
        special_tokens={name: offset + i for i, name in enumerate(SPECIAL_TOKENS)},
    )

    # Byte length of every token, for bits per byte; special tokens count 0 and are excluded.
    special_ids = {enc.encode_single_token(name) for name in SPECIAL_TOKENS}
    token_bytes = [
        0 if i in special_ids else len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)
    ]

    checks = ["Hello world! Numbers: 123, 4567.", "Unicode: naïve café, 你好, ∑ x²", "\n\n tab\t"]
    for check in checks:
        if enc.decode(enc.encode_ordinary(check)) != check:
            raise SystemExit(f"error: tokenizer round trip failed on {check!r}; please report it")

    _atomic_write(TOKENIZER_DIR / TOKENIZER_FILE, pickle.dumps(enc))
    buffer = io.BytesIO()
    torch.save(torch.tensor(token_bytes, dtype=torch.int32), buffer)
    _atomic_write(TOKENIZER_DIR / TOKEN_BYTES_FILE, buffer.getvalue())
    meta = {"source": source, "vocab_size": enc.n_vocab, "max_chars": max_chars}
    _atomic_write(meta_path, json.dumps(meta).encode())
    (TOKENIZER_DIR / VAL_TOKENS_FILE).unlink(missing_ok=True)  # tokenized with the old one
    print(f"Tokenizer: vocab {enc.n_vocab} trained in {time.time() - t0:.1f}s -> {TOKENIZER_DIR}")


def _atomic_write(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or is untouched; a failed write is one line, no temporary file."""
    from autoresearch.local_data import LocalDataError, written_atomically

    try:
        with written_atomically(path) as tmp:
            tmp.write_bytes(data)
    except LocalDataError as e:
        raise SystemExit(f"error: {e}") from None


# ---------------------------------------------------------------------------
# Runtime utilities (imported by train.py)
# ---------------------------------------------------------------------------

class Tokenizer:
    """Thin wrapper over the tiktoken encoding trained above."""

    def __init__(self, enc):
        self.enc = enc
        self.bos_token_id = enc.encode_single_token(BOS_TOKEN)

    @classmethod
    def from_directory(cls, tokenizer_dir=TOKENIZER_DIR):
        path = Path(tokenizer_dir) / TOKENIZER_FILE
        if not path.exists():
            raise _missing(f"no tokenizer at {path}")
        with open(path, "rb") as f:
            return cls(pickle.load(f))

    def get_vocab_size(self):
        return self.enc.n_vocab

    def get_bos_token_id(self):
        return self.bos_token_id

    def encode(self, text, prepend=None, num_threads=8):
        """A string gives a list of ids; a list of strings gives a list of lists (threaded)."""
        if prepend is not None and not isinstance(prepend, int):
            raise TypeError(f"prepend must be an int token id, got {type(prepend)}")
        if isinstance(text, str):
            ids = self.enc.encode_ordinary(text)
            return ids if prepend is None else [prepend] + ids
        if isinstance(text, list):
            rows = self.enc.encode_ordinary_batch(text, num_threads=num_threads)
            return rows if prepend is None else [[prepend] + row for row in rows]
        raise ValueError(f"Invalid input type: {type(text)}")

    def decode(self, ids):
        return self.enc.decode(ids)


def get_token_bytes(device="cpu"):
    """int32 tensor (vocab,): UTF-8 byte length of each token, 0 for special tokens."""
    import torch

    path = TOKENIZER_DIR / TOKEN_BYTES_FILE
    if not path.exists():
        raise _missing(f"no token byte lengths at {path}")
    return torch.load(path, map_location=device)


def default_device() -> str:
    """$AUTORESEARCH_DEVICE if set, else cuda, then Apple mps, then cpu."""
    import torch

    if os.environ.get("AUTORESEARCH_DEVICE"):
        return os.environ["AUTORESEARCH_DEVICE"]
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _tokenized_shard(path, tokenizer, batch_size=128):
    """Token ids (BOS first) of every document of one shard, in file order."""
    bos = tokenizer.get_bos_token_id()
    pf = pq.ParquetFile(path)
    for rg in range(pf.num_row_groups):
        texts = pf.read_row_group(rg, columns=["text"]).column("text").to_pylist()
        for i in range(0, len(texts), batch_size):
            for ids in tokenizer.encode(texts[i : i + batch_size], prepend=bos):
                yield np.asarray(ids, dtype=np.int32)


def _validation_documents(tokenizer):
    """The validation shard never changes, so it is tokenized once and cached beside the
    tokenizer: every run's evaluation then waits on the GPU, not on tokenization."""
    return _cached_documents(tokenizer, DATA_DIR / read_manifest()["val"],
                             TOKENIZER_DIR / VAL_TOKENS_FILE)


def _private_documents(tokenizer):
    """The private split, tokenized once and cached in PRIVATE_DIR (never beside the tokenizer,
    which training runs can read)."""
    name = read_manifest().get("private")
    if not name or not (PRIVATE_DIR / name).is_file():
        raise SystemExit(f"error: no private split in {PRIVATE_DIR} (or it is hidden from this "
                         "process); run `uv run prepare.py --private`")
    return _cached_documents(tokenizer, PRIVATE_DIR / name, PRIVATE_DIR / PRIVATE_TOKENS_FILE)


def _cached_documents(tokenizer, shard, cache):
    """Token ids of every document of `shard`, from `cache` when it holds this shard tokenized
    with this tokenizer, else tokenized and cached there."""
    key = f"{shard.name}:{hashlib.sha1((TOKENIZER_DIR / TOKENIZER_FILE).read_bytes()).hexdigest()}"
    if cache.exists():
        with np.load(cache) as cached:
            if str(cached["key"]) == key:
                return np.split(cached["tokens"], cached["offsets"][1:-1])
    docs = list(_tokenized_shard(shard, tokenizer))
    offsets = np.cumsum([0] + [len(d) for d in docs])
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, tokens=np.concatenate(docs), offsets=offsets, key=key)
    os.replace(tmp, cache)
    return docs


def _documents(split, tokenizer):
    """Endless (token ids with BOS first, epoch) stream of one split, in a fixed order."""
    val_docs = {"val": _validation_documents, "private": _private_documents}.get(
        split, lambda _: None)(tokenizer)
    epoch = 1
    while True:
        if val_docs is not None:
            docs = iter(val_docs)
        else:
            docs = (d for path in shard_paths("train") for d in _tokenized_shard(path, tokenizer))
        for doc in docs:
            yield doc, epoch
        epoch += 1


def _packed_rows(split, tokenizer, B, T, buffer_size):
    """Endless (rows (B, T+1) int32, epoch): documents packed best-fit, no padding.

    Every row starts with BOS (each document starts with one). Into the space left in a row goes
    the longest buffered document that fits whole; only when none fits is the shortest one
    cropped to fill the row exactly. Deterministic for a given data set.
    """
    docs = _documents(split, tokenizer)
    lengths: list[int] = []  # sorted lengths of buffered documents ...
    buffered: list[np.ndarray] = []  # ... and the documents, in the same order
    epoch = 1
    while True:
        rows = np.empty((B, T + 1), dtype=np.int32)
        for r in range(B):
            pos = 0
            while pos < T + 1:
                while len(buffered) < buffer_size:
                    doc, epoch = next(docs)
                    k = bisect.bisect_right(lengths, len(doc))
                    lengths.insert(k, len(doc))
                    buffered.insert(k, doc)
                remaining = T + 1 - pos
                k = bisect.bisect_right(lengths, remaining) - 1  # longest that fits whole
                if k < 0:
                    k = 0  # nothing fits: crop the shortest
                lengths.pop(k)
                doc = buffered.pop(k)[:remaining]
                rows[r, pos : pos + len(doc)] = doc
                pos += len(doc)
        yield rows, epoch


_PREFETCHERS: list[tuple[threading.Event, threading.Thread]] = []
_PACKERS: list[subprocess.Popen] = []


@atexit.register
def _stop_prefetchers():
    """Stop packing threads and processes before the interpreter tears down: a daemon thread
    killed inside native code (tokenizer, numpy) can abort the process after the summary was
    printed, and a packer process must not outlive its run."""
    for stop, _ in _PREFETCHERS:
        stop.set()
    for _, thread in _PREFETCHERS:
        thread.join(timeout=10)
    for proc in _PACKERS:
        proc.kill()


def _prefetch(iterator, depth=4):
    """Run a generator in a background thread so packing overlaps the consumer's work.

    Tokenization (tiktoken) and numpy copies release the GIL, so this buys real parallelism.
    The thread stops when the consumer is closed or garbage-collected, or at exit.
    """
    q = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        pass
                if stop.is_set():
                    return
        except BaseException as e:  # hand the failure to the consumer instead of dying silently
            q.put(e)

    thread = threading.Thread(target=work, daemon=True, name="dataloader")
    _PREFETCHERS.append((stop, thread))
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# Training batches are packed in a child process. In a thread of the training process, the
# packer's Python work (document lists, tokenizer results, bisect) held the GIL while the main
# thread was launching kernels: on an H100 that cost 1-4% of the tokens per second (depending on
# the host's CPU) and nearly doubled the step-time spread. The child writes each batch to a pipe
# as an int64 epoch followed by the (B, T+1) int32 rows; if the training process dies, the next
# write fails and the child exits.
_EPOCH = np.dtype("<i8")
_PACKER_CODE = "import sys; sys.path.insert(0, sys.argv[1]); import prepare; prepare._packer_main()"


def _start_packer(split, tokenizer, B, T, buffer_size):
    """Start a process that packs `split` into (B, T+1) rows, writing them to its stdout."""
    proc = subprocess.Popen([sys.executable, "-c", _PACKER_CODE, str(Path(__file__).parent)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    _PACKERS.append(proc)
    # sent from a thread: the pickled tokenizer overflows the pipe's buffer, and waiting for the
    # child to import its modules and read it would put that wait on the caller's start-up
    threading.Thread(target=_send_and_close, args=(proc.stdin, pickle.dumps(
        (split, tokenizer, B, T, buffer_size))), daemon=True, name="packer-args").start()
    return proc


def _send_and_close(pipe, payload):
    with contextlib.suppress(BrokenPipeError):  # the child died first: its reader reports it
        pipe.write(payload)
        pipe.close()


def _packer_main():
    """The packer process: batches from _packed_rows, prefetched, written to stdout until the
    reader goes away. Ctrl-C is the parent's to handle; it stops this process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    split, tokenizer, B, T, buffer_size = pickle.load(sys.stdin.buffer)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the pipe
    try:
        for rows, epoch in _prefetch(_packed_rows(split, tokenizer, B, T, buffer_size)):
            out.write(np.array(epoch, dtype=_EPOCH).tobytes())
            out.write(rows.data)
            out.flush()
    except BrokenPipeError:  # the training process finished or died: nothing left to do
        os._exit(0)


def _rows_from_packer(proc, B, T):
    """(rows (B, T+1) int32, epoch) from a packer process; stops it when closed."""
    try:
        while True:
            header = proc.stdout.read(_EPOCH.itemsize)
            rows = np.empty((B, T + 1), dtype=np.int32)
            if len(header) < _EPOCH.itemsize or proc.stdout.readinto(rows.data) < rows.nbytes:
                raise SystemExit(f"error: the data loader process stopped (exit code "
                                 f"{proc.wait()}); its error is printed above")
            yield rows, int(np.frombuffer(header, dtype=_EPOCH)[0])
    finally:
        proc.kill()
        proc.wait()
        _PACKERS.remove(proc)


def make_dataloader(tokenizer, B, T, split, buffer_size=1000, device=None):
    """Endless (inputs, targets, epoch) batches: inputs (B, T) int64 on `device`, targets the
    same rows shifted by one token. The training split is packed in a child process started
    here, so it fills its buffer while the model is built and compiled; the validation split
    (tokenized once, cached) needs only packing, which a thread keeps up with; so does the
    private split ("private"), which only the loop's verification can read."""
    import torch

    assert split in ("train", "val", "private"), split
    device = torch.device(device or default_device())
    if split == "train":
        rows = _rows_from_packer(_start_packer(split, tokenizer, B, T, buffer_size), B, T)
    else:
        rows = _prefetch(_packed_rows(split, tokenizer, B, T, buffer_size))
    return _batches(rows, device)


def _batches(rows, device):
    import torch

    pin = device.type == "cuda"
    try:
        for packed, epoch in rows:
            batch = torch.from_numpy(packed)
            if pin:
                batch = batch.pin_memory()
            batch = batch.to(device, non_blocking=pin).long()
            yield batch[:, :-1].contiguous(), batch[:, 1:].contiguous(), epoch
    finally:
        rows.close()


# ---------------------------------------------------------------------------
# Evaluation (the fixed metric: do not change)
# ---------------------------------------------------------------------------

def evaluate_bpb(model, tokenizer, batch_size, split="val"):
    """
    Bits per byte on the pinned validation shard (or, for the loop's held-out verification, on
    split="private"): the sum of per-token cross-entropy (nats)
    over the sum of the targets' UTF-8 byte lengths, converted to bits. Special tokens (byte
    length 0) are excluded from both sums, so the number does not depend on the vocabulary.
    Always MAX_SEQ_LEN context and EVAL_TOKENS tokens, whatever the model's config.
    """
    import torch

    with torch.no_grad():
        device = next(model.parameters()).device
        token_bytes = get_token_bytes(device=device)
        loader = make_dataloader(tokenizer, batch_size, MAX_SEQ_LEN, split, device=device)
        steps = max(1, EVAL_TOKENS // (batch_size * MAX_SEQ_LEN))
        total_nats = torch.zeros((), dtype=torch.float64, device=device)
        total_bytes = torch.zeros((), dtype=torch.int64, device=device)
        for _ in range(steps):
            x, y, _ = next(loader)
            loss = model(x, y, reduction="none").reshape(-1).double()
            nbytes = token_bytes[y.reshape(-1)]
            total_nats += (loss * (nbytes > 0)).sum()
            total_bytes += nbytes.sum()
        return total_nats.item() / (math.log(2) * total_bytes.item())


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="prepare.py",
        description="Download (or import) the training text and train the BPE tokenizer. "
        "Run once; re-running skips finished work.",
        epilog="examples:\n"
        "  uv run prepare.py                       # 10 train shards + pinned validation\n"
        "  uv run prepare.py --num-shards -1       # every shard (6542, ~600 GB)\n"
        "  uv run prepare.py --demo                # offline: the small corpus in this repo\n"
        "  uv run prepare.py --source ~/corpus     # local *.parquet (`text`), *.txt, *.jsonl\n"
        "  AUTORESEARCH_CACHE=/data/ar uv run prepare.py   # keep data elsewhere",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--num-shards", type=int, default=10,
                        help="train shards to download (-1: all); validation is always added")
    parser.add_argument("--download-workers", type=int, default=8,
                        help="parallel downloads (default 8)")
    origin = parser.add_mutually_exclusive_group()
    origin.add_argument("--demo", action="store_true",
                        help="prepare the small demo corpus this repository carries "
                        "(autoresearch/demo_corpus, public-domain books), no network")
    origin.add_argument("--source", type=Path,
                        help="prepare from local files instead of downloading: a directory of "
                        "parquet files with a `text` column (last file = validation), or of "
                        ".txt / .jsonl files")
    parser.add_argument("--tokenizer-chars", type=int, default=1_000_000_000,
                        help="characters of training text the tokenizer learns from "
                        "(default 1e9)")
    parser.add_argument("--private", action="store_true",
                        help="only make the private held-out split (and its tokens) for data "
                        "prepared before it existed")
    parser.add_argument("--force", action="store_true",
                        help="replace data prepared from another source, retrain the tokenizer")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(f"Cache directory: {DATA_DIR.parent}")
    if args.private:
        prepare_private(args.download_workers)
        _private_documents(Tokenizer.from_directory())
        return
    if args.demo:
        prepare_local(DEMO_CORPUS, args.force)
    elif args.source is not None:
        prepare_local(args.source, args.force)
    else:
        num_shards = MAX_SHARD if args.num_shards == -1 else args.num_shards
        if num_shards < 1:
            raise SystemExit("error: --num-shards must be at least 1 (or -1 for all)")
        if args.download_workers < 1:
            raise SystemExit("error: --download-workers must be at least 1")
        prepare_download(num_shards, args.download_workers, args.force)
    prepare_private(args.download_workers)
    train_tokenizer(args.tokenizer_chars, args.force)
    _private_documents(Tokenizer.from_directory())
    print("Done. Next: uv run train.py" + ("" if PROFILE != "h100" else
          "   (no H100? AUTORESEARCH_PROFILE=consumer or cpu)"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; run the same command again to resume")

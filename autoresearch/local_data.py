"""Import local text for `prepare.py --source PATH`: parquet, .txt or .jsonl files.

The result looks exactly like downloaded data: `shard_NNNNN.parquet` files with a `text` column in
the data directory, the last one being the pinned validation shard.

- A directory of parquet files (with a `text` column) is copied as it is, in name order: the last
  file is validation, like the public data set's last shard. The user's files are only read.
- .txt files are one document each (very long ones are cut at paragraph breaks); .jsonl files hold
  one JSON object with a "text" field per line. The last 5% of documents (at least one), in file
  name order, become the validation shard.
"""

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from autoresearch.errors import UserError

TEXT_SUFFIXES = (".txt", ".jsonl")
VAL_FRACTION = 0.05
DOCS_PER_SHARD = 20_000
MAX_DOC_CHARS = 50_000  # cut longer .txt files into pieces of about this size


class LocalDataError(UserError):
    pass


def import_local(source: Path, data_dir: Path) -> tuple[list[str], str]:
    """Copy or convert `source` into `data_dir`; return (train shard names, validation name)."""
    if not source.exists():
        raise LocalDataError(f"--source {source} does not exist")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    parquet = [p for p in files if p.suffix == ".parquet"]
    text = [p for p in files if p.suffix in TEXT_SUFFIXES]
    if parquet and text:
        raise LocalDataError(f"{source} mixes parquet and text files; point --source at one kind")
    if parquet:
        return _import_parquet(parquet, data_dir)
    if text:
        return _import_text(text, data_dir)
    raise LocalDataError(f"no .parquet, .txt or .jsonl files under {source}")


def _shard_name(index: int) -> str:
    return f"shard_{index:05d}.parquet"


def _import_parquet(paths: list[Path], data_dir: Path) -> tuple[list[str], str]:
    if len(paths) < 2:
        raise LocalDataError(
            f"need at least 2 parquet files (train + validation), found {len(paths)}: "
            "the last file in name order is the validation shard"
        )
    for path in paths:
        try:
            names = pq.read_schema(path).names
        except Exception as e:  # pyarrow raises several types for a bad file
            raise LocalDataError(f"{path} is not a readable parquet file ({e})") from None
        if "text" not in names:
            raise LocalDataError(f"{path} has no `text` column (columns: {', '.join(names)})")
    shard_names = [_shard_name(i) for i in range(len(paths))]
    for src, name in zip(paths, shard_names, strict=True):
        _copy(src, data_dir / name)
    return shard_names[:-1], shard_names[-1]


@contextlib.contextmanager
def written_atomically(dst: Path) -> Iterator[Path]:
    """A temporary path to write `dst` through: renamed onto `dst` when the block ends, removed
    when it fails or is interrupted, so the cache never holds a half-written or stray file.
    A failed write raises LocalDataError naming `dst` and the cause (e.g. disk full)."""
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, dst)
    except OSError as e:  # disk full, quota, permissions: the user can act on the message
        raise LocalDataError(f"cannot write {dst} ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _copy(src: Path, dst: Path) -> None:
    # A copy, never a hard link: a link would make the cache and the user's file one file, so a
    # write to either would change the other (and renaming a link onto itself is a no-op).
    with written_atomically(dst) as tmp:
        shutil.copyfile(src, tmp)


def _read_documents(paths: list[Path]) -> list[str]:
    docs = []
    for path in paths:
        if path.suffix == ".txt":
            docs.extend(_split_long(path.read_text(encoding="utf-8", errors="replace")))
            continue
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    docs.append(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise LocalDataError(
                        f'{path}:{lineno} is not a JSON object with a "text" field'
                    ) from None
    return [d for d in docs if d.strip()]


def _split_long(text: str) -> list[str]:
    """Cut a long text at paragraph breaks into pieces of at most ~MAX_DOC_CHARS."""
    if len(text) <= MAX_DOC_CHARS:
        return [text]
    pieces, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) > MAX_DOC_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces


def _import_text(paths: list[Path], data_dir: Path) -> tuple[list[str], str]:
    docs = _read_documents(paths)
    if len(docs) < 2:
        raise LocalDataError(f"need at least 2 documents (train + validation), found {len(docs)}")
    num_val = max(1, int(len(docs) * VAL_FRACTION))
    train_docs, val_docs = docs[:-num_val], docs[-num_val:]
    chunks = [train_docs[i : i + DOCS_PER_SHARD] for i in range(0, len(train_docs), DOCS_PER_SHARD)]
    names = [_shard_name(i) for i in range(len(chunks) + 1)]
    for chunk, name in zip(chunks + [val_docs], names, strict=True):
        with written_atomically(data_dir / name) as tmp:
            pq.write_table(pa.table({"text": chunk}), tmp, row_group_size=1024)
    return names[:-1], names[-1]

"""Rebuild the demo corpus (autoresearch/demo_corpus/) from the larger shared corpus, byte for byte.

    uv run scripts/build-demo-corpus.py                                  # ../shared/data/corpus
    uv run scripts/build-demo-corpus.py --corpus /data/corpus --check    # is the copy up to date?

The demo corpus is what a fresh clone prepares offline (`prepare.py --demo`) and what the tests
train on, so it travels in the repository and must stay small and free to redistribute. It keeps
only the Project Gutenberg books of the shared corpus (public domain in the US): the first
Gutenberg documents, in row order, of the first two train shards and of the validation shard (the
shared corpus's last shard). Validation stays validation.

The shared corpus carries no source column, so a Gutenberg book chunk is told apart by its shape:
the corpus builder joins a book's paragraphs with blank lines and cuts books into pieces of at
most 6,000 characters, while Wikipedia and OpenStax text has one paragraph per line and a single
blank line after its title. Same input, same pyarrow: same bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "corpus"
OUT = ROOT / "autoresearch" / "demo_corpus"
TRAIN_SHARDS = 2
TRAIN_DOCS = 600  # per train shard: what tests/conftest.py cuts
VAL_DOCS = 150
BOOK_CHUNK_MAX = 6_000  # the shared builder's largest book piece
LONE_NEWLINE = re.compile(r"(?<!\n)\n(?!\n)")


def is_book_chunk(text: str) -> bool:
    """True for a piece of a Project Gutenberg book: paragraphs parted by blank lines."""
    blank_lines = text.count("\n\n")
    return (len(text) <= BOOK_CHUNK_MAX and blank_lines >= 3
            and blank_lines > 2 * len(LONE_NEWLINE.findall(text)))


def book_chunks(shard: Path, count: int) -> list[str]:
    """The first `count` book chunks of `shard`, in row order."""
    texts = pq.read_table(shard, columns=["text"]).column("text").to_pylist()
    picked = [t for t in texts if is_book_chunk(t)][:count]
    if len(picked) < count:
        sys.exit(f"error: {shard} holds {len(picked)} Gutenberg documents, {count} needed")
    return picked


def write_shard(texts: list[str], path: Path) -> None:
    # One row group (tests read a prefix of it), zstd as the shared corpus, no statistics
    # (they would only add bytes to the repository).
    pq.write_table(pa.table({"text": texts}), path, row_group_size=len(texts),
                   compression="zstd", compression_level=19, write_statistics=False)


def sources_md(corpus: Path, shards: list[tuple[str, list[str]]]) -> str:
    """SOURCES.md: where the text comes from, its licence, and what each file holds."""
    stats = json.loads((corpus / "build_stats.json").read_text())
    books = [Path(p).stem.replace("_", " ") for p, state, _ in stats["gutenberg_books"]
             if state == "used"]
    lines = [
        "# Demo corpus",
        "",
        "Public-domain English books from Project Gutenberg, in the format `prepare.py` reads:",
        "parquet files with one `text` column, the last file being validation.",
        "",
        "| file | split | documents | characters |",
        "|---|---|---:|---:|",
    ]
    for name, texts in shards:
        split = "validation" if name == shards[-1][0] else "train"
        lines.append(f"| `{name}` | {split} | {len(texts)} | {sum(map(len, texts)):,} |")
    lines += [
        "",
        "## Source and licence",
        "",
        "Project Gutenberg texts (public domain in the United States), from the public GitHub",
        f"snapshot `{stats['repos']['gutenberg']}`.",
        "The Project Gutenberg header and licence text was stripped and hard-wrapped paragraphs",
        "re-flowed; books are cut into pieces of about 6,000 characters at paragraph breaks, and",
        "validation pieces come from runs of a book that never appear in train. The pieces are",
        "drawn from these books (not every book appears here):",
        "",
        ", ".join(sorted(books)) + ".",
        "",
        "## How it was made",
        "",
        "Cut by `scripts/build-demo-corpus.py` from the project's larger benchmark corpus (its",
        "Gutenberg part only; Wikipedia and OpenStax text is left out); run it again to rebuild",
        "these files byte for byte, or with `--check` to compare.",
        "",
    ]
    return "\n".join(lines)


def build(corpus: Path) -> dict[str, bytes]:
    """File name -> content of the demo corpus cut from `corpus`."""
    shards = sorted(corpus.glob("shard_*.parquet"))
    if len(shards) < TRAIN_SHARDS + 1:
        sys.exit(f"error: {corpus} holds {len(shards)} parquet shards; "
                 f"{TRAIN_SHARDS} train + 1 validation needed")
    picks = [(shards[i], TRAIN_DOCS) for i in range(TRAIN_SHARDS)] + [(shards[-1], VAL_DOCS)]
    cut = [(f"shard_{i:05d}.parquet", book_chunks(src, n)) for i, (src, n) in enumerate(picks)]
    files = {}
    for name, texts in cut:
        sink = pa.BufferOutputStream()
        write_shard(texts, sink)
        files[name] = sink.getvalue().to_pybytes()
    files["SOURCES.md"] = sources_md(corpus, cut).encode()
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help=f"the shared corpus (default {DEFAULT_CORPUS})")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in the repository instead of writing them")
    args = parser.parse_args()
    files = build(args.corpus)
    if args.check:
        stale = [n for n, data in files.items()
                 if not (args.out / n).exists() or (args.out / n).read_bytes() != data]
        if stale:
            sys.exit(f"error: {', '.join(stale)} in {args.out} differ from a fresh build")
        print(f"{args.out} matches a fresh build")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    size = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} files, {size / 1e6:.1f} MB, to {args.out}")


if __name__ == "__main__":
    main()

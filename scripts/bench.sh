#!/usr/bin/env bash
# bench.sh: how fast train.py runs on this machine, and where the seconds outside training go.
# It trains on the data prepare.py prepared; BENCHMARKS.md says which corpus its numbers used.
set -euo pipefail

usage() {
  cat <<'EOF2'
Usage: scripts/bench.sh [--budget S] [--runs N] [--cold] [--train FILE] [--json FILE] [...]

Time the dataloader alone on the CPU, then run train.py N times in a row (each a fresh
process, its time budget replaced by S seconds) and print one row per run: tokens/s, MFU,
median step time and its spread, start-up / first step (compilation) / evaluation seconds,
total overhead (total_seconds - training_seconds), wall time, peak GPU memory, val_bpb.

Options:
  --budget S               training seconds per run (default: the profile's, 300 on an H100)
  --runs N                 runs in a row (default 1); with --cold, run 1 is cold, the rest warm
  --cold                   start from empty compile caches (a temporary folder)
  --train FILE             benchmark another copy of train.py (default: train.py)
  --dataloader-seconds S   how long to time the dataloader alone; 0 skips it (default 10)
  --log-dir DIR            each run's full log (default runs/bench)
  --json FILE              also write every number to FILE
  --quiet                  do not echo train.py's output
  -h, --help               show this help

Examples:
  scripts/bench.sh --budget 60 --runs 2 --cold
  AUTORESEARCH_PROFILE=cpu scripts/bench.sh --budget 10 --json /tmp/bench.json
EOF2
}

for arg in "$@"; do
  if [[ "$arg" == "-h" || "$arg" == "--help" ]]; then usage; exit 0; fi
done
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Run from the caller's directory (relative paths in the options stay theirs), with the repo
# importable: train.py and prepare.py load from it.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec uv run --project "$root" python -m autoresearch.bench "$@"

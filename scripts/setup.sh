#!/usr/bin/env bash
# setup.sh: from a fresh clone to "ready to train" in one command.
#
# 1. uv sync (the Python environment), 2. uv run prepare.py (data + tokenizer; every option is
# passed through, e.g. --source DIR or --num-shards N), 3. pick the hardware profile that fits
# the GPU found and print the line to export.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/setup.sh [prepare.py options...]

Install the environment (uv sync), prepare data and tokenizer (uv run prepare.py ...),
then print the AUTORESEARCH_PROFILE export line for this machine's GPU.

Options (passed to prepare.py):
  --source DIR      prepare from local parquet/.txt/.jsonl files instead of downloading
  --num-shards N    training shards to download (default 10)
  --force           replace data prepared from another source
  -h, --help        show this help

Examples:
  scripts/setup.sh
  scripts/setup.sh --num-shards 4
  scripts/setup.sh --source ~/corpus
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
uv sync
uv run prepare.py "$@"
profile="$(scripts/check-hardware.sh --profile)"
echo
echo "Ready. This machine fits the '$profile' profile; use it in this shell with:"
echo
echo "  export AUTORESEARCH_PROFILE=$profile"
echo
echo "Then: scripts/run-experiment.sh (one run) or scripts/run-loop.sh --tag <name> --agent <backend>"

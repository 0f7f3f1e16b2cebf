#!/usr/bin/env bash
# run-experiment.sh: one training run of train.py, logged to a file, then its key metrics.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/run-experiment.sh [--profile P] [--log FILE] [--checkpoint-dir DIR] [--quiet]

Run `uv run train.py` once (output shown and saved to FILE), then print the key metrics
of its summary block. Exits with train.py's status; on failure shows the end of the log.

Options:
  --profile P           hardware profile: h100 (default), consumer or cpu
  --log FILE            where the output goes (default: run.log)
  --checkpoint-dir DIR  also save model.pt + config.json there (AUTORESEARCH_CHECKPOINT_DIR)
  --quiet               only write the log, do not echo training progress
  -h, --help            show this help

Examples:
  scripts/run-experiment.sh
  scripts/run-experiment.sh --profile cpu --log /tmp/cpu.log
EOF
}

log="run.log"
quiet=0
while (( $# )); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --profile) export AUTORESEARCH_PROFILE="${2:?--profile needs a value}"; shift 2 ;;
    --log) log="${2:?--log needs a file}"; shift 2 ;;
    --checkpoint-dir) export AUTORESEARCH_CHECKPOINT_DIR="${2:?--checkpoint-dir needs a dir}"; shift 2 ;;
    --quiet) quiet=1; shift ;;
    *) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

log="$(realpath -m "$log")"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "training: uv run train.py (profile ${AUTORESEARCH_PROFILE:-h100}), log: $log"
status=0
if (( quiet )); then
  uv run train.py >"$log" 2>&1 || status=$?
else
  uv run train.py 2>&1 | tee "$log" || status=$?
fi
if (( status != 0 )); then
  echo "error: train.py failed (exit $status); the end of $log:" >&2
  tail -n 20 "$log" >&2
  exit "$status"
fi
# The loop's own strict parser reads the summary block, so this prints what the loop would see.
uv run python - "$log" <<'PY'
import sys

from autoresearch.execution.parse import parse_summary

with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    metrics = parse_summary(f.read())
if metrics is None:
    sys.exit(f"error: no valid summary block at the end of {sys.argv[1]}")
print("---")
for key, value in metrics.items():
    print(f"{key + ':':<18}{value:.6f}" if key == "val_bpb" else f"{key + ':':<18}{value:g}")
PY

#!/usr/bin/env bash
# show-results.sh: the morning view in a terminal: summary numbers, then the best experiments.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/show-results.sh [--top N] [--tag TAG] [--results PATH] [--plot [--out PNG]]

Print one tag's summary (runs, experiments kept/discarded/crashed, best val_bpb, gain
over the baseline, experiments and runs per hour of loop time, GPU hours, agent cost, biggest
improvements) and its N best runs.

Options:
  --top N          how many runs and improvements to list (default 10)
  --tag TAG        which loop tag (default: the newest, the one whose loop started last)
  --results PATH   results.tsv to read (default: results.tsv; any tool's file works)
  --plot           also write progress.png (in the repository root)
  --out PNG        write the plot there instead (implies --plot)
  -h, --help       show this help

Examples:
  scripts/show-results.sh
  scripts/show-results.sh --top 5 --plot
EOF
}

top=10
plot=0
out=progress.png
common=()
while (( $# )); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --top) top="${2:?--top needs a number}"; shift 2 ;;
    --tag) common+=(--tag "${2:?--tag needs a value}"); shift 2 ;;
    --results) common+=(--results "$(realpath -m "${2:?--results needs a path}")"); shift 2 ;;
    --plot) plot=1; shift ;;
    --out) plot=1; out="$(realpath -m "${2:?--out needs a path}")"; shift 2 ;;
    *) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
uv run agent_loop.py summary --top "$top" "${common[@]}"
uv run agent_loop.py results --top "$top" "${common[@]}"
if (( plot )); then
  uv run agent_loop.py plot --out "$out" "${common[@]}"
fi

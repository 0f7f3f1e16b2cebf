#!/usr/bin/env bash
# run-loop.sh: start (or resume) the overnight research loop; options go to agent_loop.py run.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/run-loop.sh [--profile P] --tag TAG --agent AGENT [agent_loop.py run options...]

Start, or resume with the same command, the loop on branch autoresearch/TAG. Every option
except --profile is passed to `uv run agent_loop.py run` (see its --help for all of them).

Common options:
  --profile P            hardware profile: h100 (default), consumer or cpu
  --tag TAG              name of the run (branch autoresearch/TAG)
  --agent AGENT          sweep (no LLM), claude, codex, openai, anthropic
  --model M              model for the backend
  --hours H              start no new experiment after H hours
  --max-experiments N    stop after N experiments
  --max-cost USD         stop when the agent has spent this much
  --keep-checkpoints K   keep model.pt of the best K kept runs
  -h, --help             show this help

Examples:
  scripts/run-loop.sh --tag nov21 --agent claude --hours 8
  scripts/run-loop.sh --profile cpu --tag demo --agent sweep --max-experiments 3
EOF
}

args=()
while (( $# )); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --profile) export AUTORESEARCH_PROFILE="${2:?--profile needs a value}"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec uv run agent_loop.py run "${args[@]}"

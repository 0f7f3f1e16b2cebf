#!/usr/bin/env bash
# check-hardware.sh: what this machine offers autoresearch, as one JSON object on stdout.
#
# GPU (name, count, memory, compute capability), CUDA and driver versions, system memory,
# uv, whether the data and tokenizer are prepared, and the hardware profile that fits.
# Works on CPU-only machines too ("gpu": null, "suggested_profile": "cpu").
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/check-hardware.sh [--profile]

Print this machine's GPU, CUDA, driver, memory, uv version, and whether the data and
tokenizer are prepared (in $AUTORESEARCH_CACHE, default ~/.cache/autoresearch), as JSON.

Options:
  --profile   print only the suggested AUTORESEARCH_PROFILE (h100, consumer or cpu)
  -h, --help  show this help

Examples:
  scripts/check-hardware.sh
  scripts/check-hardware.sh | jq .gpu
  export AUTORESEARCH_PROFILE=$(scripts/check-hardware.sh --profile)
EOF
}

field=""
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --profile) field="suggested_profile" ;;
  "") ;;
  *) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
  echo '{"uv": null, "error": "uv not found: install it with curl -LsSf https://astral.sh/uv/install.sh | sh"}'
  exit 1
fi

UV_VERSION="$(uv --version)" FIELD="$field" exec uv run --quiet python - <<'PY'
import json, os, platform, shutil, subprocess

import torch

from constants import DATA_DIR, DATASET_MANIFEST, PROFILES, TOKENIZER_DIR
from prepare import TOKEN_BYTES_FILE, TOKENIZER_FILE

H100_CLASS_GB = 70  # 80 GB cards (H100, A100-80G, H200...) run the h100 profile

gpus = []
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    gpus.append({"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                 "compute_capability": f"{p.major}.{p.minor}"})
driver = None
if shutil.which("nvidia-smi"):
    out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)
    driver = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
if gpus and gpus[0]["memory_gb"] >= H100_CLASS_GB:
    profile = "h100"
elif gpus or mps:
    profile = "consumer"
else:
    profile = "cpu"
shards = sorted(DATA_DIR.glob("*.parquet")) if DATA_DIR.is_dir() else []
tokenizer = all((TOKENIZER_DIR / f).is_file() for f in (TOKENIZER_FILE, TOKEN_BYTES_FILE))
report = {
    "gpu": gpus[0] if gpus else None,
    "gpu_count": len(gpus),
    "mps": mps,
    "cuda_available": torch.cuda.is_available(),
    "cuda": torch.version.cuda,
    "driver": driver,
    "torch": torch.__version__,
    "python": platform.python_version(),
    "cpu_count": os.cpu_count(),
    "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    "uv": os.environ.get("UV_VERSION"),
    "profile_env": os.environ.get("AUTORESEARCH_PROFILE"),
    "suggested_profile": profile,
    "cache_dir": str(DATA_DIR.parent),
    "data": {"manifest": DATASET_MANIFEST.is_file(), "shards": len(shards)},
    "tokenizer": tokenizer,
    "ready": DATASET_MANIFEST.is_file() and bool(shards) and tokenizer,
}
assert profile in PROFILES
print(report[os.environ["FIELD"]] if os.environ.get("FIELD") else json.dumps(report, indent=2))
PY

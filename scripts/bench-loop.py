"""The real loop on real GPUs for a fixed time: throughput, busy fraction, noise, compounding.

    uv run scripts/bench-loop.py --tag g2 --minutes 5 -- --gpus all
    uv run scripts/bench-loop.py --tag r2 --minutes 5 -- --ray auto
    uv run scripts/bench-loop.py --tag k2 --minutes 4 --kill-when-busy -- --gpus all

Runs `agent_loop.py run --tag TAG --agent sweep --no-sample --plain ARGS...` (the arguments after
`--` go to the loop as they are), asks it to stop after --minutes (`agent_loop.py stop`: the runs
under way finish), then reads what it left and prints one JSON object:

  runs, experiments    rows of the tag; agent experiments (experiment, fix, port)
  wave_s, phase_s      the first wave's time; the time from its end to the end of the last run
  per_hour             agent experiments finished after the first wave, per hour of phase_s
  busy                 time the GPUs spent in train.py after the first wave / (workers x phase_s)
  noise                the threshold and the baseline-wave values, by GPU
  compounds            the tag's branch is exactly the line of kept commits, each a child of
                       the previous best
  by_worker            runs and kept runs per worker / GPU / node

--kill-when-busy: once every worker is training, kill -9 the loop's process group, list the
processes still on the GPUs (nvidia-smi: the runs survive a kill -9 of the loop, by design), run
the same command again until --minutes have passed in all, then check that no run was lost or
recorded twice and that nothing is left on any GPU.

The runs train on whatever prepare.py prepared in the cache. BENCHMARKS.md's numbers used the
larger benchmark corpus beside our checkouts (../shared/data/corpus, not in the repository);
its Data paragraph says how to get comparable data.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch.ledger.results import read_results  # noqa: E402
from autoresearch.ledger.state import load_state, read_live  # noqa: E402
from autoresearch.model import AGENT_KINDS  # noqa: E402


def gpu_processes() -> list[str]:
    """pid and GPU of every compute process nvidia-smi lists."""
    proc = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid",
                           "--format=csv,noheader"], capture_output=True, text=True)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def start(repo: Path, tag: str, loop_args: list[str]) -> subprocess.Popen:
    log = open(repo / f"loop-{tag}.log", "a")
    return subprocess.Popen([sys.executable, str(ROOT / "agent_loop.py"), "run", "--tag", tag,
                             "--agent", "sweep", "--no-sample", "--plain", "--repo", str(repo),
                             *loop_args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_after(proc: subprocess.Popen, repo: Path, tag: str, deadline: float) -> None:
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    if proc.poll() is None:
        subprocess.run([sys.executable, str(ROOT / "agent_loop.py"), "stop", "--tag", tag,
                        "--repo", str(repo)], capture_output=True)
        proc.wait()


def all_training(repo: Path, tag: str) -> bool:
    workers = read_live(repo, tag).get("workers", {})
    return bool(workers) and all(w.get("phase") == "training" for w in workers.values())


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def report(repo: Path, tag: str) -> dict:
    rows = [r for r in read_results(repo / "results.tsv") if r.tag == tag]
    state = load_state(repo, tag)
    spans = []
    for r in rows:
        metrics = json.loads((repo / r.run_dir / "metrics.json").read_text())
        spans.append((r, seconds(r.timestamp) - metrics["seconds"], seconds(r.timestamp),
                       metrics["seconds"]))
    wave = [s for s in spans if s[0].kind in ("baseline", "noise")]
    begin = max(end for _, _, end, _ in wave)
    after = [s for s in spans if s[2] > begin]
    end = max(e for _, _, e, _ in spans)
    workers = sorted({r.worker for r in rows})
    busy = sum(e - max(s, begin) for _, s, e, _ in after)
    experiments = [r for r, _, e, _ in after if r.kind in AGENT_KINDS]
    line = subprocess.run(["git", "rev-list", "--first-parent",
                           f"{state.base_commit}..autoresearch/{tag}"], cwd=repo,
                          capture_output=True, text=True).stdout.split()
    kept = list(dict.fromkeys(r.commit for r in rows if r.status == "keep"
                              and r.kind != "baseline"))
    by_gpu: dict[str, list[float]] = {}
    for r in rows:
        if r.kind in ("baseline", "noise") and r.status != "crash":
            by_gpu.setdefault(r.gpu or "-", []).append(round(r.val_bpb, 6))
    numbers = [r.experiment for r in rows]
    return {
        "tag": tag, "runs": len(rows),
        "experiments": sum(r.kind in AGENT_KINDS for r in rows),
        "kinds": {k: sum(r.kind == k for r in rows) for k in dict.fromkeys(r.kind for r in rows)},
        "kept": len(kept), "crashed": sum(r.status == "crash" for r in rows),
        "wave_s": round(begin - min(s for _, s, _, _ in wave), 1),
        "phase_s": round(end - begin, 1),
        "per_hour": round(len(experiments) / ((end - begin) / 3600), 1) if end > begin else None,
        "busy": round(busy / (len(workers) * (end - begin)), 3) if end > begin else None,
        "noise": {"threshold": state.noise.threshold if state.noise else None,
                  "values_by_gpu": by_gpu},
        "compounds": [c[:7] for c in reversed(line)] == kept,
        "unique_runs": len(numbers) == len(set(numbers)),
        "no_gaps": sorted(numbers) == list(range(1, len(numbers) + 1)),
        "journal_left": len(state.jobs) + len(state.candidates),
        "by_worker": [{"worker": w, "gpu": sorted({r.gpu for r in rows if r.worker == w}),
                       "node": sorted({r.node for r in rows if r.worker == w}),
                       "runs": sum(r.worker == w for r in rows),
                       "kept": sum(r.worker == w and r.status == "keep" for r in rows)}
                      for w in workers],
        "val_bpb": {"baseline": rows[0].val_bpb,
                    "best": min((r.val_bpb for r in rows if r.status == "keep"), default=None)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--kill-when-busy", action="store_true")
    parser.add_argument("loop_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    loop_args = args.loop_args[1:] if args.loop_args[:1] == ["--"] else args.loop_args
    deadline = time.monotonic() + args.minutes * 60
    proc = start(args.repo, args.tag, loop_args)
    killed = None
    if args.kill_when_busy:
        time.sleep(5)
        while not all_training(args.repo, args.tag) and time.monotonic() < deadline:
            time.sleep(0.5)  # every worker mid-run
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        state = load_state(args.repo, args.tag)
        killed = {"running": [j.n for j in state.jobs if j.phase.value == "running"],
                  "gpu_processes_after_kill": gpu_processes()}
        proc = start(args.repo, args.tag, loop_args)
    stop_after(proc, args.repo, args.tag, deadline)
    result = report(args.repo, args.tag)
    if killed is not None:
        recorded = {r.experiment for r in read_results(args.repo / "results.tsv")
                    if r.tag == args.tag}
        result["kill"] = dict(killed, rerun_and_recorded=all(n in recorded
                                                              for n in killed["running"]),
                              gpu_processes_at_end=gpu_processes())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""How well the loop keeps N GPUs busy: experiments per hour and the GPU busy fraction.

    uv run scripts/bench-parallel.py                      # N = 1, 2, 4, 8 local, then Ray
    uv run scripts/bench-parallel.py --workers 1 2 --no-ray --run-seconds 10

Simulated GPUs (no GPU needed): a fake train.py that trains for exactly --run-seconds and prints
train.py's summary block, one worker per simulated GPU, and a fake agent that thinks for a fifth
of a run (--think-seconds) and then changes a constant that does not matter (no keeps, so no
paired runs: every run is an experiment). The loop is the real one: work trees, commits, the
guard, the journal, results.tsv. Locally each worker gets CUDA_VISIBLE_DEVICES=k; through Ray
each run is a task on a local Ray cluster with N logical GPUs.

experiments/hour: agent experiments finished after the first wave, per hour of the time from the
end of the first wave to the end of the last run. busy: the time the simulated GPUs spent in
train.py (from its own clock) over N x that same time; held: the time each slot was given to a
run by the executor (process start, or Ray's task dispatch, file shipping and return, included).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoresearch.agents import AgentRequest, Proposal, Usage  # noqa: E402
from autoresearch.config import Harness, Options  # noqa: E402
from autoresearch.execution.gpus import Slot  # noqa: E402
from autoresearch.execution.local import LocalExecutor  # noqa: E402
from autoresearch.ledger.results import read_results  # noqa: E402
from autoresearch.scheduler import Loop  # noqa: E402
from autoresearch.workspace.guard import data_fingerprint  # noqa: E402

FAKE_TRAIN = '''import os, sys, time
KNOB = 0
start, wall = time.monotonic(), time.time()
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else {seconds})
with open("span", "w") as f:  # when this process ran, for the busy fraction
    f.write(f"{{wall}} {{time.time()}}")
print("profile: cpu")
print("---")
for key, value in [("val_bpb", 1.0), ("training_seconds", time.monotonic() - start),
                   ("total_seconds", time.monotonic() - start), ("peak_vram_mb", 1.0),
                   ("mfu_percent", 0.0), ("total_tokens_M", 0.0), ("num_steps", 1),
                   ("num_params_M", 0.0), ("depth", 1)]:
    print(f"{{key}}: {{float(value):.6f}}")
'''


class ThinkingAgent:
    """Thinks for a while, then changes KNOB to a value it has not used (a no-op edit)."""

    name = "bench"

    def __init__(self, think: float):
        self.think = think
        self.count = 0
        self.lock = threading.Lock()

    def propose(self, request: AgentRequest) -> Proposal:
        time.sleep(self.think)
        with self.lock:
            self.count += 1
            value = self.count * 1000 + request.worker
        path = request.repo / "train.py"
        text = path.read_text()
        old = next(line for line in text.splitlines() if line.startswith("KNOB = "))
        path.write_text(text.replace(old, f"KNOB = {value}"))
        return Proposal(f"KNOB {value}", Usage(cost_usd=0.0))


class TimedExecutor:
    """The real executor, with each run's start and end written down."""

    def __init__(self, inner):
        self.inner, self.spans, self.lock = inner, [], threading.Lock()

    def execute(self, spec, **kw):
        start = time.time()  # wall clock, to compare with train.py's own
        result = self.inner.execute(spec, **kw)
        with self.lock:
            self.spans.append((spec.n, start, time.time()))
        return result

    def clean_up(self, spec):
        return self.inner.clean_up(spec)


def make_repo(folder: Path, seconds: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.py").write_text(FAKE_TRAIN.format(seconds=seconds))
    (folder / "prepare.py").write_text("# fixed\n")
    (folder / "harness.py").write_text("# fixed\n")
    (folder / "constants.py").write_text(f"TIME_BUDGET = {seconds}\n")
    (folder / ".gitignore").write_text("results.tsv\nruns/\n.autoresearch/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=folder, check=True)
    return folder


class Quiet:
    def event(self, text: str, style: str = "") -> None: ...
    def update(self, live: dict) -> None: ...
    def outcome(self, row) -> None: ...


def measure(n: int, run_seconds: float, think: float, per_worker: int, use_ray: bool) -> dict:
    folder = make_repo(Path(tempfile.mkdtemp(prefix="bench-parallel-")) / "repo", run_seconds)
    slots = [Slot(k, None if use_ray else str(k), "sim") for k in range(n)]
    if use_ray:
        from autoresearch.execution import ray as cluster

        os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster
        import ray

        ray.init(num_cpus=n + 2, num_gpus=n, include_dashboard=False, logging_level="error",
                 log_to_driver=False, runtime_env={"py_modules": [str(
                     Path(__file__).resolve().parents[1] / "autoresearch")]})
        inner = cluster.RayExecutor(data_fingerprint(Harness.read(folder).cache_dir))
        cmd = list(cluster.DEFAULT_CMD)
    else:
        inner, cmd = LocalExecutor({s.gpu: "sim" for s in slots}), [sys.executable, "train.py"]
    executor = TimedExecutor(inner)
    opts = Options(tag="bench", noise_runs=0, noise_floor=1.0, timeout=run_seconds * 5,
                   max_experiments=per_worker * n, sample=False, train_cmd=cmd)
    agents = [ThinkingAgent(think) for _ in range(n)]
    try:
        Loop(folder, opts, agents, Quiet(), executor=executor, slots=slots).run()
    finally:
        if use_ray:
            import ray

            ray.shutdown()
    rows = {r.experiment: r for r in read_results(folder / "results.tsv")}
    wave = [(s, e) for k, s, e in executor.spans if rows[k].kind in ("baseline", "noise")]
    runs = [(s, e) for k, s, e in executor.spans if rows[k].kind == "experiment"]
    trained = [tuple(map(float, (folder / row.run_dir / "span").read_text().split()))
               for row in rows.values() if row.kind == "experiment"]
    begin, end = max(e for _, e in wave), max(e for _, e in runs)

    def share(spans: list[tuple[float, float]]) -> float:
        inside = sum(min(e, end) - max(s, begin) for s, e in spans if e > begin)
        return inside / (n * (end - begin))

    return {"n": n, "experiments": len(runs), "hours": (end - begin) / 3600,
            "per_hour": len(runs) / ((end - begin) / 3600), "busy": share(trained),
            "held": share(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--run-seconds", type=float, default=20.0)
    parser.add_argument("--think-seconds", type=float, default=None,
                        help="default: a fifth of --run-seconds")
    parser.add_argument("--per-worker", type=int, default=3, help="experiments per worker")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-local", action="store_true")
    args = parser.parse_args()
    think = args.think_seconds if args.think_seconds is not None else args.run_seconds / 5
    modes = ([] if args.no_local else [False]) + ([] if args.no_ray else [True])
    print(f"run {args.run_seconds:g} s, agent thinks {think:g} s, {args.per_worker} experiments "
          f"per worker")
    print(f"{'executor':8} {'N':>2} {'experiments':>11} {'exp/hour':>9} {'x N=1':>6} "
          f"{'/ N':>5} {'busy':>6} {'held':>6}")
    for use_ray in modes:
        base = None
        for n in args.workers:
            m = measure(n, args.run_seconds, think, args.per_worker, use_ray)
            base = base or m["per_hour"] / n
            speedup = m["per_hour"] / base
            print(f"{'ray' if use_ray else 'local':8} {n:>2} {m['experiments']:>11} "
                  f"{m['per_hour']:>9.1f} {speedup:>6.2f} {speedup / n:>5.2f} "
                  f"{100 * m['busy']:>5.1f}% {100 * m['held']:>5.1f}%", flush=True)


if __name__ == "__main__":
    main()

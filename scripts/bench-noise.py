"""False keeps: no-op edits on the real cpu-profile train.py while another process loads the CPU
part of the time.

    uv run scripts/bench-noise.py --source ../shared/data/corpus      # prepares a cache first
    uv run scripts/bench-noise.py --source autoresearch/demo_corpus   # the corpus in this repo
    AUTORESEARCH_CACHE=/prepared uv run scripts/bench-noise.py --edits 10
    AUTORESEARCH_CACHE=/prepared uv run scripts/bench-noise.py --noise-runs 0 --noise-floor 0.02

The loop runs in process on a fresh copy of this project (the real train.py, prepare.py and
constants.py, cpu profile, 10 s of training per run) with an agent whose every edit changes the
program but not what it computes: a new top-level constant that nothing reads. Meanwhile a busy
process takes one core for --load-seconds out of every --load-every seconds, so the machine's
speed, and with it the steps a fixed time budget buys, changes under the runs. Every edit is a
no-op, so every keep is a false keep.

BENCHMARKS.md's numbers used the larger benchmark corpus beside our checkouts
(../shared/data/corpus, not in the repository); its Data paragraph says how to get comparable data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch.agents import AgentRequest, Proposal, Usage  # noqa: E402
from autoresearch.names import DEFAULT_FLOOR  # noqa: E402

HARNESS = ("train.py", "prepare.py", "constants.py", "harness.py", "program.md", ".gitignore")


class NoOpAgent:
    """Adds a constant nothing reads: another program, the same computation."""

    name = "no-op"

    def __init__(self):
        self.count = 0

    def propose(self, request: AgentRequest) -> Proposal:
        self.count += 1
        path = request.repo / "train.py"
        path.write_text(path.read_text() + f"\nUNUSED_{self.count} = {self.count}\n")
        return Proposal(f"no-op {self.count}: an unused constant", Usage(cost_usd=0.0))


class Load:
    """One busy core, on for `on` seconds out of every `every`."""

    def __init__(self, every: float, on: float):
        self.every, self.on, self.stop = every, on, threading.Event()

    def __enter__(self) -> Load:
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()

    def run(self) -> None:
        while not self.stop.is_set():
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            self.stop.wait(self.on)
            busy.kill()
            busy.wait()
            self.stop.wait(self.every - self.on)


class Quiet:
    def event(self, text: str, style: str = "") -> None:
        print(time.strftime("%H:%M:%S"), text, flush=True)

    def update(self, live: dict) -> None: ...
    def outcome(self, row) -> None: ...


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--load-every", type=float, default=150.0)
    parser.add_argument("--load-seconds", type=float, default=75.0)
    parser.add_argument("--noise-runs", type=int, default=2, help="as for agent_loop.py run")
    parser.add_argument("--noise-floor", type=float, default=DEFAULT_FLOOR,
                        help="as for agent_loop.py run: the smallest gain worth a keep, however "
                             "sure the paired test is")
    parser.add_argument("--source", type=Path, help="prepare a fresh cache from these files")
    args = parser.parse_args()
    os.environ["AUTORESEARCH_PROFILE"] = "cpu"
    folder = Path(tempfile.mkdtemp(prefix="bench-noise-"))
    if args.source:
        os.environ["AUTORESEARCH_CACHE"] = str(folder / "cache")
        subprocess.run([sys.executable, str(ROOT / "prepare.py"), "--source", str(args.source)],
                       check=True)
    repo = folder / "repo"
    repo.mkdir()
    for name in HARNESS:
        shutil.copy(ROOT / name, repo / name)
    for git in (["init", "-q", "-b", "main"], ["add", "-A"],
                ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "init"]):
        subprocess.run(["git", *git], cwd=repo, check=True)

    from autoresearch.config import Options
    from autoresearch.execution.gpus import Slot
    from autoresearch.ledger.results import read_results
    from autoresearch.ledger.state import load_state
    from autoresearch.memory.journal import subject_of
    from autoresearch.scheduler import Loop

    opts = Options(tag="noise", noise_runs=args.noise_runs, noise_floor=args.noise_floor,
                   max_experiments=args.edits, sample=False)
    with Load(args.load_every, args.load_seconds):
        Loop(repo, opts, NoOpAgent(), Quiet(), slots=[Slot(0, None, "cpu")]).run()
    rows = read_results(repo / "results.tsv")
    for r in rows:
        print(f"#{r.experiment:<3} {r.kind:10} {r.status:8} {r.val_bpb:.6f} steps "
              f"{r.num_steps} {r.reason}")
    noise = load_state(repo, "noise").noise
    # a candidate that passed the first look was run again: a confirm row under either rule
    # (the default reruns the candidate; --controls pairs a control with each confirm)
    screened = len({subject_of(r) for r in rows if r.kind == "confirm"})
    kept = sum(r.status == "keep" and r.kind == "experiment" for r in rows)
    steps = [r.num_steps for r in rows if r.num_steps]
    print(f"smallest gain kept with 80 % power {noise.threshold:.6f} ({noise.rule}); steps per "
          f"run {min(steps)}-{max(steps)}; {screened} of {args.edits} no-op edits passed the "
          f"first look; "
          f"{kept} of {args.edits} kept (false keeps)")


if __name__ == "__main__":
    main()

"""The sweep agent on a research landscape with a known optimum, through the whole loop.

    uv run scripts/bench-sweep.py                       # seeds 0-4, 60 experiments, noise 0.0005
    uv run scripts/bench-sweep.py --seeds 0 1 --experiments 40 --noise 0.001 --drift 0.05
    uv run scripts/bench-sweep.py --before 7447b4c      # the sweep of that commit, same loop
    uv run scripts/bench-sweep.py --controls            # the loop's old keep rule (pairs)

Each seed is a loop (`agent_loop.py run --agent sweep`, in process: work trees, commits, the
guard, noise wave, screens, paired confirmations, the journal, duplicate detection) over a repo
whose train.py is tests/landscape_train.py: val_bpb is a known function of train.py's constants,
plus seeded noise (and drift). Per seed it reports:

  steps to 0.02 / 0.01   agent experiments until the best's true distance to the optimum (the
                         landscape value without noise) is within 0.02 / 0.01 ("-": never)
  final gap              the best's true distance to the optimum at the end
  kept, false keeps      keeps, and keeps whose true value is not below their parent's
  runs saved             proposals not run because the same program had run (duplicates)

--before REV runs the sweep agent of an older commit (its autoresearch/agents/sweep.py, read from
git) in today's loop with the same seeds: 7447b4c is the last sweep without the journal, a random
local search that remembered only the descriptions of the last rows. Its "runs saved" are the
repeats it proposed, which that version's loop would have run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LANDSCAPE = ROOT / "tests" / "landscape_train.py"


def load_landscape():
    spec = importlib.util.spec_from_file_location("landscape_train", LANDSCAPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Quiet:
    def event(self, text: str, style: str = "") -> None: ...
    def update(self, live: dict) -> None: ...
    def outcome(self, row) -> None: ...


def make_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.py").write_text(LANDSCAPE.read_text())
    (folder / "prepare.py").write_text("# fixed\n")
    (folder / "harness.py").write_text("# fixed\n")
    (folder / "constants.py").write_text("TIME_BUDGET = 1\n")
    (folder / ".gitignore").write_text("results.tsv\nruns/\n.autoresearch/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=folder, check=True)
    return folder


def sweep_agent_class(rev: str | None) -> type:
    """Today's SweepAgent, or the one in autoresearch/agents/sweep.py at commit `rev`."""
    if rev is None:
        from autoresearch.agents.sweep import SweepAgent
        return SweepAgent
    source = subprocess.run(["git", "show", f"{rev}:autoresearch/agents/sweep.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    module = sys.modules.setdefault(f"sweep_{rev}", type(sys)(f"sweep_{rev}"))  # dataclasses
    exec(compile(source, f"{rev}:autoresearch/agents/sweep.py", "exec"), module.__dict__)
    return module.SweepAgent


def one_seed(seed: int, experiments: int, noise: float, drift: float, landscape,
             agent_class: type, controls: bool = False) -> dict:
    from autoresearch.config import Options
    from autoresearch.execution.gpus import Slot
    from autoresearch.ledger.state import load_state, tag_dir
    from autoresearch.memory.journal import JOURNAL, load
    from autoresearch.model import AGENT_KINDS
    from autoresearch.scheduler import Loop

    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    repo = make_repo(folder / "repo")
    os.environ.update(LANDSCAPE_NOISE=str(noise), LANDSCAPE_SEED=str(seed),
                      LANDSCAPE_DRIFT=str(drift), LANDSCAPE_COUNTER_FILE=str(folder / "runs"))
    opts = Options(tag="sweep", noise_runs=2, max_experiments=experiments, sample=False,
                   timeout=60, controls=controls)
    Loop(repo, opts, agent_class(seed=seed), Quiet(), slots=[Slot(0, None, "cpu")]).run()
    entries = load(tag_dir(repo, "sweep") / JOURNAL)
    by_commit = {e.commit: e for e in entries}
    best_gap, reached, done, kept, false_keeps = None, {}, 0, 0, 0
    for e in entries:
        if e.kind in AGENT_KINDS:
            done += 1
        if e.kind == "baseline":
            best_gap = landscape.gap(e.constants)
        if e.status == "keep" and e.kind in AGENT_KINDS:
            kept += 1
            parent = by_commit.get(e.parent)
            if parent is not None and landscape.landscape_value(e.constants) >= \
                    landscape.landscape_value(parent.constants):
                false_keeps += 1
            best_gap = landscape.gap(e.constants)
        for target in (0.02, 0.01):
            if best_gap is not None and best_gap <= target and target not in reached:
                reached[target] = done
    return {"seed": seed, "to_0.02": reached.get(0.02, "-"), "to_0.01": reached.get(0.01, "-"),
            "final_gap": round(best_gap, 4), "kept": kept, "false_keeps": false_keeps,
            "runs_saved": load_state(repo, "sweep").duplicates, "experiments": done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--experiments", type=int, default=60)
    parser.add_argument("--noise", type=float, default=0.0005)
    parser.add_argument("--drift", type=float, default=0.0)
    parser.add_argument("--before", metavar="REV", help="the sweep agent of this commit")
    parser.add_argument("--controls", action="store_true",
                        help="as for agent_loop.py run: the old (control, candidate) pairs rule")
    args = parser.parse_args()
    landscape, agent_class = load_landscape(), sweep_agent_class(args.before)
    print(f"sweep of {args.before or 'this version'}; noise sd {args.noise:g}, drift "
          f"{args.drift:g}, {args.experiments} experiments a seed"
          f"{', --controls' if args.controls else ''}")
    print(f"{'seed':>4} {'to 0.02':>7} {'to 0.01':>7} {'final gap':>9} {'kept':>4} "
          f"{'false keeps':>11} {'runs saved':>10}")
    for seed in args.seeds:
        r = one_seed(seed, args.experiments, args.noise, args.drift, landscape, agent_class,
                     args.controls)
        print(f"{r['seed']:>4} {r['to_0.02']!s:>7} {r['to_0.01']!s:>7} {r['final_gap']:>9.4f} "
              f"{r['kept']:>4} {r['false_keeps']:>11} {r['runs_saved']:>10}", flush=True)


if __name__ == "__main__":
    main()

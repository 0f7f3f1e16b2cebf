"""What happens to a run's weights after the decision: sample the kept, delete the rest.

model.pt is the only big file of a run. A kept run's weights are sampled once (a few lines of
generated text in sample_output.txt, for humans reading the night's work); runs not kept lose
their weights at once; of the kept ones only the best K keep theirs (checkpoints.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import autoresearch
from autoresearch.artifacts.checkpoints import WEIGHTS, prune_checkpoints
from autoresearch.execution.sandbox import run_view
from autoresearch.model import Row, is_keep
from autoresearch.redact import run_env

SAMPLE_MODULE = "autoresearch.artifacts.sample"  # python -m SAMPLE_MODULE RUN_DIR --out FILE


def tidy_weights(repo: Path, decided: list[Row], tag_rows: list[Row], keep_best: int,
                 sample_timeout: float | None, log: Callable[[str], None],
                 hidden: list[Path] | None = None) -> None:
    """After a decision on `decided` rows; sample_timeout None: do not sample; `hidden`: what
    the sampler must not see, as a run (it runs the agent's train.py). Never fatal."""
    for row in decided:
        if row.status != "keep":
            (repo / row.run_dir / WEIGHTS).unlink(missing_ok=True)
    # the run a user opens is the keep (the experiment), not its confirmation run, which comes
    # later in `decided`: sampling only the last kept row left the keep without a sample
    kept = sorted((r for r in decided if r.status == "keep"), key=lambda r: not is_keep(r))
    chosen = repo / kept[0].run_dir if kept else None
    if sample_timeout is not None and chosen and (chosen / WEIGHTS).exists():
        failed = sample(repo, chosen, sample_timeout, hidden)
        if failed:
            log(f"sampling {chosen.name} failed (not fatal): {failed}")
    for path in prune_checkpoints(repo, tag_rows, keep_best):
        log(f"pruned {path.relative_to(repo.resolve())}")


def sample(repo: Path, run_dir: Path, timeout: float, hidden: list[Path] | None = None,
           ) -> str | None:
    """Write run_dir/sample_output.txt in a subprocess (in a run's view when `hidden` is given);
    the error line if it failed."""
    # the package must be importable in the subprocess wherever the loop was started from
    paths = [str(Path(autoresearch.__file__).parent.parent), os.environ.get("PYTHONPATH")]
    # it imports the run's train.py: the run's code gets no credentials here either
    env = run_env(dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p)))
    cmd = [sys.executable, "-m", SAMPLE_MODULE, str(run_dir), "--out",
           str(run_dir / "sample_output.txt")]
    if hidden is not None:
        cmd = run_view(cmd, hidden)
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return None

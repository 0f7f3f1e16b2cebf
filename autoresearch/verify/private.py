"""The loop's side of held-out verification: which runs are scored on the private split, and
whether a keep stands.

Scored, each once, right after its decision and before its weights are tidied away: the baseline
and noise runs (their spread is the private noise) and every run about to be kept. A keep is
refused unless the private split bears out at least RETAINED of its public gain, give or take the
private noise: a change that improved the public split but not data the runs never saw. (Two
splits of one corpus give an honest change gains of about one size, not the same size: hence a
share, not equality.)
The refused row says so in words; the private numbers go to results.tsv's own columns and the
loop's log, never into the reason, which the agents read.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import autoresearch
from autoresearch.artifacts.checkpoints import WEIGHTS, run_dir_for
from autoresearch.execution import sandbox
from autoresearch.memory.journal import Entry
from autoresearch.model import Decision, Job, Kind, Outcome, Row
from autoresearch.policy import Run, fit, signed
from autoresearch.redact import run_env  # the agent's model code gets no credentials either

PRIVATE_DIR = "private"  # under the cache directory: prepare.py's PRIVATE_DIR
MANIFEST = Path("data") / "dataset.json"
CACHE_FILE = "private.json"  # under .autoresearch/<tag>/: values of parents scored on demand
VERIFY_MODULE = "autoresearch.verify.evaluate"
VERIFY_TIMEOUT = 900.0
REFUSED = "refused: its gain does not hold on the private held-out split"
RETAINED = 0.5  # the share of the public gain the private split must bear out
NOISE_MARGIN = 2.0  # private noise allowed: this many standard deviations of one run


class VerificationError(Exception):
    pass


def private_split(cache_dir: Path) -> Path | None:
    """The private split's file, if the prepared data has one."""
    try:
        name = json.loads((cache_dir / MANIFEST).read_text()).get("private")
    except (OSError, ValueError):
        return None
    path = cache_dir / PRIVATE_DIR / name if name else None
    return path if path is not None and path.is_file() else None


def prepare_private(repo: Path, cache_dir: Path) -> str | None:
    """Run the repo's `prepare.py --private` (data prepared before the private split existed);
    why it failed, or None."""
    env = dict(os.environ, AUTORESEARCH_CACHE=str(cache_dir))
    proc = subprocess.run([sys.executable, "prepare.py", "--private"], cwd=repo, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return None if private_split(cache_dir) else "it made no private split"


def score(repo: Path, run_dir: Path, gpu: str | None, sealed: bool,
          timeout: float = VERIFY_TIMEOUT) -> float:
    """run_dir's weights on the private split, in a verification process on `gpu`."""
    paths = [str(Path(autoresearch.__file__).parent.parent), os.environ.get("PYTHONPATH")]
    # Compile caches go to the sealed view's scratch space: the shared ones are read-only there
    # (what it wrote in them, later runs could read), so its kernels compile cold.
    env = run_env(dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p),
               PYTHONDONTWRITEBYTECODE="1",
               TORCHINDUCTOR_CACHE_DIR=f"{sandbox.SCRATCH}/inductor",
               TRITON_CACHE_DIR=f"{sandbox.SCRATCH}/triton",
               FLASH_ATTENTION_CUTE_DSL_CACHE_DIR=f"{sandbox.SCRATCH}/flash_attention"))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    cmd = [sys.executable, "-m", VERIFY_MODULE, str(run_dir.resolve())]
    try:
        proc = subprocess.run(sandbox.sealed_view(cmd) if sealed else cmd, cwd=repo, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VerificationError(f"scoring {run_dir.name} took over {timeout:.0f}s") from None
    # Its output is not shown: the agent's model code ran there and could print private text.
    lines = proc.stdout.strip().splitlines()
    try:
        value = float(json.loads(lines[-1])["private_bpb"]) if proc.returncode == 0 else None
    except (IndexError, ValueError, KeyError, TypeError):
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise VerificationError(f"scoring {run_dir.name} on the private split failed (exit code "
                                f"{proc.returncode}; its output is not kept)")
    return round(value, 6)


@dataclass
class Verifier:
    """Scores runs on the private split and vets keeps; owned by the coordinator."""

    repo: Path
    cache_path: Path  # parents scored on demand: "<commit7> <device>" -> value
    floor: float
    sealed: bool  # bubblewrap works: the verification process is sealed
    log: Callable[[str, str], None]
    gpus: dict[int, str | None]  # worker -> its GPU (CUDA_VISIBLE_DEVICES), None: as inherited

    def review(self, job: Job, out: Outcome, decision: Decision, rows: list[Row]) -> Decision:
        """The decision, its rows carrying private values; a keep the private split does not
        bear out becomes a discard."""
        if out.metrics is None:
            return decision
        if job.kind == Kind.BASELINE:
            return self._baseline(job, decision)
        if not active(rows):
            return decision
        if job.kind == Kind.NOISE:
            if not self._checkpointed(job.run_dir):  # like its baseline: nothing to score
                return decision
            try:
                return self._scored(job, decision, self._score(job.run_dir, job.worker))
            except VerificationError as e:  # one noise value fewer: the floor still holds
                self.log(f"#{job.n}: {e}", "yellow")
                return decision
        if decision.keep:
            return self._vet(kept_run(job, decision), out, decision, rows)
        return decision

    def _checkpointed(self, run_dir: str) -> bool:
        """Whether the run saved loadable weights (model.pt alone cannot be loaded)."""
        return (self.repo / run_dir / "config.json").is_file()

    def _baseline(self, job: Job, decision: Decision) -> Decision:
        if not self._checkpointed(job.run_dir):
            self.log("held-out verification off for this tag: the baseline saved no checkpoint "
                     "(train.py writes model.pt and config.json to $AUTORESEARCH_CHECKPOINT_DIR)",
                     "yellow")
            return decision
        try:
            return self._scored(job, decision, self._score(job.run_dir, job.worker))
        except VerificationError as e:
            self.log(f"held-out verification off for this tag: {e}", "yellow")
            return decision

    def _score(self, run_dir: str, worker: int) -> float:
        return score(self.repo, self.repo / run_dir, self.gpus.get(worker), self.sealed)

    @staticmethod
    def _scored(job: Job, decision: Decision, value: float, delta: float | None = None,
                ) -> Decision:
        rows = [replace(r, private_bpb=value if r.experiment == job.n else r.private_bpb,
                        private_delta=delta) for r in decision.rows]
        return replace(decision, rows=rows)

    def _vet(self, job: Job, out: Outcome, decision: Decision, rows: list[Row]) -> Decision:
        try:
            value = self._score(job.run_dir, job.worker)
            parent = self.parent_value(job, out.device, rows)
        except VerificationError as e:
            return refuse(job, decision, f"refused: it could not be verified ({e})",
                          f"#{job.subject} refused: {e}")
        delta = round(value - parent, 6)  # as results.tsv writes it: row and journal agree
        # the public gain the keep stands on: its measured gain (policy's evidence)
        public = next((r.gain for r in decision.rows if r.gain is not None), 0.0)
        required = RETAINED * public - self.threshold(rows)
        scored = self._scored(job, decision, value, delta)
        numbers = (f"gain public {signed(public)}, private {signed(-delta)} (needs "
                   f"{signed(required)})")
        if -delta < required:
            return refuse(job, scored, REFUSED, f"#{job.subject} refused by held-out "
                          f"verification: {numbers}")
        scored.log.append(f"#{job.subject} verified on the private split: {numbers}")
        return scored

    def threshold(self, rows: list[Row]) -> float:
        """The private noise: the baseline wave's private values through the public noise model
        (worker offsets apart), NOISE_MARGIN times their spread of one run, at least the floor."""
        runs = [Run(r.commit, str(r.worker or 0), r.private_bpb) for r in rows
                if r.kind in ("baseline", "noise") and r.private_bpb is not None]
        std = fit(runs).within_std if runs else None
        return max(self.floor, NOISE_MARGIN * std) if std is not None else self.floor

    def parent_value(self, job: Job, device: str, rows: list[Row]) -> float:
        """The parent's private value on this device model: its scored runs, else the cache,
        else its weights scored now (the parent is the best, whose weights are kept)."""
        values = [r.private_bpb for r in rows if r.commit == job.parent[:7]
                  and r.private_bpb is not None and r.device == device]
        if values:
            return statistics.fmean(values)
        cache = self._cache()
        key = f"{job.parent[:7]} {device}"
        if key not in cache:
            cache[key] = self._score(self._weights_of(job.parent, rows), job.worker)
            tmp = self.cache_path.with_name(self.cache_path.name + ".tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            os.replace(tmp, self.cache_path)
        return cache[key]

    def _cache(self) -> dict[str, float]:
        try:
            return json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return {}

    def _weights_of(self, commit: str, rows: list[Row]) -> str:
        for r in rows:
            path = run_dir_for(self.repo, r) if r.commit == commit[:7] else None
            if path is not None and (path / WEIGHTS).is_file():
                return str(path.relative_to(self.repo.resolve()))
        raise VerificationError(f"its parent {commit[:7]} has no weights left to score")


def without_private(rows: list[Row], entries: list[Entry]) -> tuple[list[Row], list[Entry]]:
    """Rows and journal entries with their private values blanked: what agents may be shown."""
    return ([replace(r, private_bpb=None, private_delta=None) for r in rows],
            [replace(e, private_delta=None) for e in entries])


def active(rows: list[Row]) -> bool:
    """Verification is on for a tag whose baseline was scored on the private split, or is still
    running (a noise run may finish first)."""
    base = next((r for r in rows if r.kind == "baseline"), None)
    return base is None or base.private_bpb is not None


def kept_run(job: Job, decision: Decision) -> Job:
    """The run whose weights stand for a keep: the one that decided it, or, when a pair's
    control decided it (its candidate's half came first: a port's own run, a crossover), the
    candidate's own first run, whose row and weights waited for the decision."""
    if job.commit == decision.keep:
        return job
    row = next(r for r in decision.rows if r.status == "keep" and r.commit == decision.keep[:7])
    return replace(job, kind=Kind(row.kind), n=row.experiment, commit=decision.keep,
                   run_dir=row.run_dir, worker=row.worker or 0)


def refuse(job: Job, decision: Decision, reason: str, log: str) -> Decision:
    """A keep turned into a discard: no ref moves, the candidate's runs stay tried (a control
    ran its parent: no ref)."""
    rows = [replace(r, status="discard", reason=f"{r.reason}; {reason}") for r in decision.rows]
    tried = {r.experiment: job.commit for r in rows if r.commit == job.commit[:7]}
    return replace(decision, rows=rows, keep=None, tried=tried, log=[log])


def open_verification(repo: Path, cache_dir: Path, new_tag: bool, remote: bool,
                      log: Callable[[str, str], None]) -> bool:
    """Whether this loop verifies keeps, said in one start line; data prepared before the
    private split gets it here, for a new tag (a running tag's data must not change)."""
    off = "held-out verification off"
    if remote:
        log(f"{off}: runs on Ray workers are not verified yet", "yellow")
        return False
    if private_split(cache_dir) is None and (cache_dir / MANIFEST).is_file() and new_tag:
        log("preparing the private held-out split (once): uv run prepare.py --private", "")
        failed = prepare_private(repo, cache_dir)
        if failed:
            log(f"{off}: `uv run prepare.py --private` failed: {failed}", "yellow")
            return False
    if private_split(cache_dir) is None:
        after = "" if new_tag else " and start a new --tag"
        log(f"{off}: no private split in {cache_dir} (run `uv run prepare.py --private`{after})",
            "yellow")
        return False
    why = sandbox.unavailable()
    if why:
        log(f"warning: {why}: training runs can read the private split in "
            f"{cache_dir / PRIVATE_DIR}, so held-out verification guards against overfitting "
            f"to the validation split, not against a run that looks for the private one", "yellow")
    else:
        log(f"held-out verification on: runs cannot see {cache_dir / PRIVATE_DIR}", "")
    return True


# ---- what the review commands show: public and private values of the kept line


@dataclass
class PrivateSummary:
    baseline: float | None  # the baseline commit's mean private_bpb
    best: float | None  # the head of the kept line's (its scored run)
    improvement: float | None  # baseline - best on the private split
    gap: float | None  # the public improvement minus the private one: what did not generalise


def private_curve(rows: list[Row]) -> list[tuple[int, float]]:
    """(experiment, private_bpb) of every kept or baseline run that was scored."""
    return [(r.experiment, r.private_bpb) for r in rows if r.private_bpb is not None
            and r.status == "keep" and r.experiment is not None]


def private_summary(rows: list[Row], public_improvement: float | None) -> PrivateSummary:
    """The night on the private split beside the public one; all None when nothing was
    scored (verification off, or another tool's results.tsv)."""
    base = next((r for r in rows if r.kind == "baseline"), None)
    values = [r.private_bpb for r in rows if base is not None and r.commit == base.commit
              and r.kind in ("baseline", "noise") and r.private_bpb is not None]
    baseline = statistics.fmean(values) if values else None
    curve = private_curve(rows)
    best = curve[-1][1] if curve else None
    improvement = baseline - best if baseline is not None and best is not None else None
    gap = public_improvement - improvement \
        if improvement is not None and public_improvement is not None else None
    return PrivateSummary(baseline, best, improvement, gap)

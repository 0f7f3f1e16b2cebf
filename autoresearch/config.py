"""The options of `agent_loop.py run`, and what the loop reads from the harness it runs."""

from __future__ import annotations

import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.names import (
    DEFAULT_DRIFT_STD,
    DEFAULT_FLOOR,
    GRACE_SECONDS,
    SAMPLE_TIMEOUT,
    default_train_cmd,
)
from autoresearch.target import DEFAULT, Target

DEFAULT_TIME_BUDGET = 300  # if constants.py cannot tell
NO_DATA = ".autoresearch/no-data"  # a target's own "cache folder": it prepares no LLM data
TIMEOUT_MARGIN = 120.0  # on top of 2 x TIME_BUDGET: start-up, compilation and the final eval
BACKOFF_SECONDS = 60.0  # first pause after a few unusable proposals in a row, doubling
# Experiments in a row without a keep before the agents are told they are on a plateau and asked
# for a different kind of change. Ten: about an hour on one H100 with 5-minute runs, and more
# than the runs one confirmation takes, so one unlucky confirmation does not trigger it.
PLATEAU_AFTER = 10


@dataclass
class Options:
    tag: str
    noise_runs: int = 2
    noise_floor: float = DEFAULT_FLOOR
    max_pairs: int | None = None  # a candidate's replicas after its first run (None: policy's)
    controls: bool = False  # replicas are (control, candidate) pairs, not runs of the candidate
    drift_std: float = DEFAULT_DRIFT_STD  # the drift a run the sequential test allows for
    alpha: float | None = None  # the false-keep rate at the floor (None: policy's default)
    timeout: float | None = None  # None: 2 x TIME_BUDGET + TIMEOUT_MARGIN
    max_experiments: int | None = None  # agent experiments (fixes and ports too) for the tag
    hours: float | None = None  # wall clock of this invocation
    max_cost: float | None = None  # USD of agent spend for the whole tag
    max_fix_attempts: int = 2
    keep_checkpoints: int = 3
    train_cmd: list[str] = field(default_factory=default_train_cmd)
    grace: float = GRACE_SECONDS
    backoff: float = BACKOFF_SECONDS
    sample: bool = True  # write sample_output.txt for each kept run
    sample_timeout: float = SAMPLE_TIMEOUT
    gpus: str | None = None  # --gpus: None (one worker), "all", "0,1", "0,0"
    workers: int | None = None  # --workers: N workers on the CPU (execution/gpus.cpu_slots)
    mixed_gpus: bool = False
    guard_environment: bool = True  # watch the Python environment for agent/run tampering
    prefetch: bool = True  # an agent prepares its next proposal while its GPU trains
    plateau_after: int = PLATEAU_AFTER  # 0: never say so
    verify: bool = True  # held-out verification of keeps on the private split (verify/)
    target: Target = DEFAULT  # what is optimised: the repository's [tool.autoresearch]


@dataclass
class Harness:
    """What the loop needs to know from the repository's constants.py."""

    time_budget: float
    cache_dir: Path
    profile: str  # the profile runs are recorded under ("h100", "h100@45s"); "" if unknown

    @classmethod
    def read(cls, repo: Path) -> Harness:
        try:
            values = runpy.run_path(str(repo / "constants.py"))
        except SystemExit as e:  # constants.py rejects a bad AUTORESEARCH_PROFILE this way
            message = str(e.code)
            raise UserError(message.removeprefix("error: ")) from None
        except Exception as e:
            raise UserError(f"constants.py does not load ({type(e).__name__}: {e}): restore it "
                            f"(`git checkout constants.py`)") from None
        budget = float(values.get("TIME_BUDGET", DEFAULT_TIME_BUDGET))
        default_cache = os.environ.get("AUTORESEARCH_CACHE", Path.home() / ".cache/autoresearch")
        profile = str(values.get("PROFILE", ""))
        if profile and os.environ.get("AUTORESEARCH_TIME_BUDGET", "").strip():
            profile += f"@{budget:g}s"  # a shortened budget is a profile of its own
        return cls(budget, Path(values.get("CACHE_DIR", default_cache)), profile)

    @classmethod
    def of(cls, repo: Path, target: Target) -> Harness:
        """The default target's constants.py; a target of its own has no constants.py and no
        prepared data (a folder that never exists, so its data fingerprint never changes), and
        its time budget is its timeout."""
        if not target.custom:
            return cls.read(repo)
        return cls(float(target.timeout or DEFAULT_TIME_BUDGET), Path(repo) / NO_DATA, "")

    def timeout(self) -> float:
        return 2 * self.time_budget + TIMEOUT_MARGIN

"""The loop's records, typed: what a job is, which step it is in, what was decided about it.

A job is one training run of one commit on one worker. The journal in state.json holds every job
that is not finished, with its phase, so a loop killed at any moment can finish each of them:

    READY      committed, waiting for its worker's GPU (nothing to undo)
    RUNNING    training: if the loop died, the run is killed and run again from the start
    RECORDING  the decision is journaled; carrying it out again is harmless (keyed by run number)

A proposal (an agent editing train.py in its worker's work tree) is not a job yet: it has no
commit, and one that a dead loop left behind is simply undone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    """results.tsv's `status` column. A str, so `row.status == "keep"` holds and the TSV cell is
    the value (StrEnum would do, but it needs Python 3.11 and the package supports 3.10)."""

    KEEP = "keep"
    DISCARD = "discard"
    CRASH = "crash"

    def __str__(self) -> str:
        return self.value



class Kind(str, Enum):
    """results.tsv's `kind` column."""

    BASELINE = "baseline"  # the unmodified code: the first run of a tag
    NOISE = "noise"  # the baseline again, on every worker: the run-to-run spread
    EXPERIMENT = "experiment"  # an agent's edit
    FIX = "fix"  # the agent repairing its own crashed edit
    PORT = "port"  # a change that beat its own parent, re-applied onto a newer best
    CONTROL = "control"  # the candidate's parent again, between its two runs (the paired test)
    CONFIRM = "confirm"  # the candidate again, after its control


AGENT_KINDS = (Kind.EXPERIMENT, Kind.FIX, Kind.PORT)  # code an agent wrote


@dataclass
class Row:
    commit: str
    val_bpb: float
    memory_gb: float
    status: Status  # a plain string is taken as its Status
    description: str
    experiment: int | None = None
    kind: str = "experiment"
    tag: str = ""
    timestamp: str = ""
    profile: str = ""
    training_seconds: float | None = None
    total_seconds: float | None = None
    mfu_percent: float | None = None
    total_tokens_M: float | None = None
    num_steps: int | None = None
    reason: str = ""
    agent: str = ""
    cost_usd: float | None = None
    run_dir: str = ""
    parent: str = ""
    worker: int | None = None
    gpu: str = ""
    device: str = ""
    node: str = ""
    pairs: int | None = None
    gain: float | None = None
    gain_low: float | None = None
    gain_high: float | None = None
    p_value: float | None = None
    private_bpb: float | None = None
    private_delta: float | None = None

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def is_crash(self) -> bool:
        return self.status == Status.CRASH


def is_measured(row: Row) -> bool:
    """A run that produced a real value: not a crash (its cell reads 0.0) and not an
    unparsable cell (nan). Its status says so, never the number: a target's metric may be
    exactly 0 (an error of 0, an accuracy of 0), and that is a value."""
    return row.status != Status.CRASH and math.isfinite(row.val_bpb)


def is_experiment(row: Row) -> bool:
    """An experiment: a run of code an agent proposed (a fix or a port included). Baselines,
    noise, control and confirmation runs are runs, not experiments. A file without the kind
    column (another tool's) has only experiments."""
    return not row.kind or row.kind in AGENT_KINDS


def is_keep(row: Row) -> bool:
    """A keep: a kept change's own row (not its confirmation's, not the baseline's)."""
    return row.status == Status.KEEP and is_experiment(row)


class Phase(str, Enum):
    READY = "ready"
    RUNNING = "running"
    RECORDING = "recording"


@dataclass
class Task:
    """Work for one worker's agent besides a fresh experiment: fix a crash, or port a change."""

    kind: Kind  # FIX or PORT
    worker: int
    subject: int  # the run it is about
    commit: str  # the crashed code, or the change to re-apply
    parent: str  # that commit's parent
    description: str
    detail: str  # the crash log's tail, or what the three-way merge could not reconcile
    diff: str = ""  # PORT: the change as a unified diff against its parent
    attempt: int = 1  # FIX: the how-many-th attempt this is
    row: Row | None = None  # PORT: the ported run's row, written once the port is settled


@dataclass
class Candidate:
    """A run in the grey zone at first sight, waiting for more runs of itself (CONFIRM) until
    the sequential test decides (policy.judge_runs), or with --controls for pairs: the parent
    again (CONTROL) and itself (CONFIRM), one after the other on one worker, or at once on two
    (a crossover), judged by policy.sequential."""

    n: int
    worker: int
    commit: str
    parent: str
    row: Row  # its own row, written once the candidate is decided
    control: float | None = None  # the val_bpb of the current pair's control run
    failed: str = ""  # why the pair cannot be judged (a crashed control or confirmation)
    gains: list[float] = field(default_factory=list)  # the paired gains so far (control - run)
    pending: float | None = None  # the candidate's half of a pair whose control is still to come
    # (a port's own run, or a crossover's candidate run that finished first)
    # the workers those halves ran on (their offsets correct the pair's gain); None: its own
    control_worker: int | None = None
    pending_worker: int | None = None


@dataclass
class Decision:
    """What a finished run changes. Carried out in this order: rows, refs, state."""

    rows: list[Row]
    keep: str | None = None  # the branch moves here, from the job's parent
    tried: dict[int, str] = field(default_factory=dict)  # run -> commit, at tried/<run>
    follow: list[Job] = field(default_factory=list)  # runs queued next on the same worker
    tasks: list[Task] = field(default_factory=list)  # work for the worker's agent
    hold: Candidate | None = None  # start waiting for this candidate's replica runs
    settle: int | None = None  # the candidate this decision closes
    port: Port | None = None  # re-apply a change onto the best (merged by the coordinator)
    log: list[str] = field(default_factory=list)
    stop: str = ""  # the loop cannot go on (e.g. the baseline crashed): why, for the user


@dataclass
class Port:
    """A change that beat its own parent, to be re-applied onto a newer best: by a clean merge,
    or by the worker's agent, which then gets its diff and what the merge could not reconcile."""

    n: int  # the run that beat its parent
    worker: int
    commit: str
    parent: str
    description: str
    gain: float | None = None  # its gain over its parent
    diff: str = ""  # its unified diff against its parent (for the agent)
    conflict: str = ""  # what the three-way merge could not reconcile (for the agent)


@dataclass
class Job:
    id: str  # unique within the tag, e.g. "j17"
    kind: Kind
    worker: int
    commit: str
    parent: str  # the best it was proposed on: what it is judged against
    description: str
    agent: str = ""
    cost_usd: float | None = None
    priority: int = 1  # lower first: follow-ups (0) before the worker's own proposal (1); -1: a
    # control renewed after a restart, before the confirmation it belongs to
    phase: Phase = Phase.READY
    n: int | None = None  # run number, given when it starts running
    run_dir: str = ""
    fix_attempt: int = 0
    subject: int | None = None  # the run it serves (candidate, ported or crashed run)
    hypothesis: str = ""
    changes: list[str] = field(default_factory=list)  # short summary against its parent
    fingerprint: str = ""  # of its train.py (agent code): no second run of one program
    seen: int = 0  # guard violations seen when it started (a later one voids the run)
    lost: int = 0  # times the run was lost outside it (a node died) and run again
    # a replica (a candidate's next run by the default rule): whichever worker is free may run it;
    # `worker` is then the one that took it, so its row and the fit name the GPU that ran it
    any_worker: bool = False
    # the most workers training at once while it ran, itself included (contention: metrics.json);
    # not only at its start, so that runs started together count each other
    busy: int = 0
    decision: Decision | None = None


def job_from(data: dict) -> Job:
    data = dict(data, kind=Kind(data["kind"]), phase=Phase(data["phase"]))
    if data.get("decision"):
        data["decision"] = decision_from(data["decision"])
    return Job(**data)


def task_from(data: dict) -> Task:
    row = Row(**data["row"]) if data.get("row") else None
    return Task(**dict(data, kind=Kind(data["kind"]), row=row))


def candidate_from(data: dict) -> Candidate:
    return Candidate(**dict(data, row=Row(**data["row"])))


def decision_from(data: dict) -> Decision:
    return Decision(
        rows=[Row(**r) for r in data["rows"]], keep=data["keep"],
        tried={int(k): v for k, v in data["tried"].items()},
        follow=[job_from(j) for j in data["follow"]], tasks=[task_from(t) for t in data["tasks"]],
        hold=candidate_from(data["hold"]) if data["hold"] else None, settle=data["settle"],
        port=Port(**data["port"]) if data["port"] else None, log=list(data["log"]),
        stop=data.get("stop", ""))


@dataclass
class Outcome:
    """How a run came out, read from its exit status and log by the harness (never by train.py)."""

    metrics: dict[str, float] | None  # the summary block of a usable run, None for a crash
    reason: str  # "" for a usable run, else the crash class (execution/parse.py)
    profile: str = ""
    seconds: float = 0.0
    device: str = ""  # device model: numbers compare only within one
    gpu: str = ""
    node: str = ""
    log_tail: str = ""  # the end of run.log, for a fix request
    error: str = ""  # the log's own last error line, for messages


def row_for(job: Job, out: Outcome, status: str, reason: str, tag: str, now: str) -> Row:
    """The results.tsv row of a finished job. A crash has no metrics; its reason is its class.
    A target of its own reports its metric alone (val_bpb holds its loss): the LLM harness's
    other columns stay empty."""
    m = out.metrics if status != "crash" else None
    return Row(
        commit=job.commit[:7], val_bpb=m["val_bpb"] if m else 0.0,
        memory_gb=m.get("peak_vram_mb", 0.0) / 1024 if m else 0.0, status=status,
        description=job.description, experiment=job.n, kind=job.kind.value, tag=tag,
        timestamp=now, profile=out.profile,
        training_seconds=m.get("training_seconds") if m else None,
        total_seconds=m.get("total_seconds") if m else None,
        mfu_percent=m.get("mfu_percent") if m else None,
        total_tokens_M=m.get("total_tokens_M") if m else None,
        num_steps=int(m["num_steps"]) if m and "num_steps" in m else None,
        reason=out.reason if status == "crash" else reason,
        agent=job.agent, cost_usd=job.cost_usd, run_dir=job.run_dir, parent=job.parent[:7],
        worker=job.worker, gpu=out.gpu, device=out.device, node=out.node)

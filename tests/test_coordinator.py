"""The coordinator alone: a fake git in memory, state and results.tsv in a temp folder, no
workers, no threads. Each test drives it as the loop does (plan_wave, take, start, record;
reserve, submit, end_proposal for a proposal) and reads what it decided and wrote."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from autoresearch.agents import AgentRequest
from autoresearch.agents.prompt import build_context
from autoresearch.ledger import porter
from autoresearch.ledger.coordinator import Coordinator
from autoresearch.ledger.results import read_results
from autoresearch.ledger.state import Porting, State, load_state, now_iso, save_state
from autoresearch.model import Job, Kind, Outcome, Phase, Port, Task, decision_from
from autoresearch.names import RESULTS
from autoresearch.policy import Rule
from autoresearch.workspace.git import TRAIN

TAG = "unit"
BRANCH = f"autoresearch/{TAG}"
BASELINE = "LR = 0.04\nDEPTH = 8\n"


class FakeGit:
    """The part of workspace.git.Git the coordinator uses, over commits kept in a dict."""

    files = (TRAIN,)
    editable = TRAIN

    def __init__(self) -> None:
        self.commits: dict[str, tuple[str | None, str, str]] = {}  # sha -> (parent, text, msg)
        self.refs: dict[str, str] = {}
        self.fail_set_ref = False  # a crash at the first ref update (after the row is written)

    def commit_file(self, parent: str | None, text: str, message: str, path: str = TRAIN) -> str:
        sha = hashlib.sha1(f"{parent}\0{text}\0{message}".encode()).hexdigest()
        self.commits[sha] = (parent, text, message)
        return sha

    def commit_files(self, parent: str | None, files: dict[str, str], message: str) -> str:
        return self.commit_file(parent, files[TRAIN], message)

    def sources_at(self, commit: str) -> dict[str, str]:
        return {TRAIN: self.file_at(commit)}

    def commit(self, name: str) -> tuple[str | None, str, str]:
        """A commit by its id or a prefix of it (results.tsv keeps 7 characters), as git does."""
        (sha,) = [sha for sha in self.commits if sha.startswith(name)]
        return self.commits[sha]

    def file_at(self, commit: str, path: str = TRAIN) -> str:
        return self.commit(commit)[1] if path == TRAIN else f"# {path}\n"

    def parent(self, commit: str) -> str | None:
        return self.commit(commit)[0]

    def hypothesis(self, commit: str) -> str:
        message = self.commit(commit)[2]
        return message.split("Hypothesis: ", 1)[1].split("\n")[0] if "Hypothesis: " in message \
            else ""

    def diff(self, old: str, new: str) -> str:
        return f"{self.file_at(old)}->{self.file_at(new)}"

    def merge3(self, base: str, ours: str, theirs: str) -> tuple[str, int]:
        """Clean only when one side left the base as it was."""
        if ours == base:
            return theirs, 0
        if theirs == base or ours == theirs:
            return ours, 0
        return f"<<<<<<<\n{ours}=======\n{theirs}>>>>>>>\n", 1

    def resolve(self, ref: str) -> str | None:
        return self.refs.get(ref)

    def set_ref(self, ref: str, commit: str, old: str | None = None) -> None:
        if self.fail_set_ref:
            self.fail_set_ref = False
            raise KeyboardInterrupt("killed while moving a ref")  # not an Exception: kill -9
        assert old is None or self.refs.get(ref) == old, f"{ref} moved"
        self.refs[ref] = commit


class Night:
    """A coordinator on a fake git, and the moves the loop makes on it."""

    def __init__(self, folder: Path, state: State | None = None, git: FakeGit | None = None,
                 controls: bool = False):
        self.folder, self.git = folder, git or FakeGit()
        self.log: list[str] = []
        self.shown: list = []
        self.offsets: dict[int, float] = {}  # worker -> what its GPU adds to every run
        if state is None:
            base = self.git.commit_file(None, BASELINE, "base")
            self.git.refs[f"refs/heads/{BRANCH}"] = base
            state = State(tag=TAG, branch=BRANCH, base_commit=base, created_at=now_iso(),
                          fixed_sha256={})
            save_state(folder, state)
        self.coord = Coordinator(folder, self.git, state, noise_runs=2,
                                 rule=Rule(controls=controls), max_fix_attempts=1,
                                 plateau_after=0,
                                 log=lambda message, style="": self.log.append(message),
                                 outcome=self.shown.append)

    def results(self) -> list:
        return [r for r in read_results(self.folder / RESULTS) if r.tag == TAG]

    def run(self, job: Job, value: float | None) -> None:
        """Start the job and record it with this val_bpb (None: it crashed)."""
        self.done(self.coord.start(job, 0), value)

    def done(self, job: Job, value: float | None) -> None:
        """Record a started job with this val_bpb, plus its worker's offset (None: crashed)."""
        self.coord.record(job, outcome(None if value is None
                                       else value + self.offsets.get(job.worker, 0.0), job.n))

    def drain(self, values: dict[str, float | None], worker: int = 0) -> None:
        """Run the worker's jobs until none is left; each commit's text gives its value."""
        while (job := self.coord.take(worker)) is not None:
            self.run(job, values[self.git.file_at(job.commit)])

    def propose(self, text: str, description: str, worker: int = 0) -> Job:
        """An agent's proposal on the best, committed and queued as the pipeline does."""
        parent = self.coord.best()
        assert self.coord.desk.reserve(worker, parent, "experiment", lambda n: f"m{n}", None)
        commit = self.git.commit_file(parent, text, f"{description}\n\nHypothesis: faster")
        job = self.coord.desk.submit(worker, Kind.EXPERIMENT, commit, parent, description, "fake",
                                0.01, "faster", None)
        self.coord.desk.end_proposal(worker, None)
        return job


def outcome(value: float | None, n: int) -> Outcome:
    if value is None:
        return Outcome(None, "syntax", log_tail="SyntaxError: invalid syntax")
    jitter = 0.0004 * (n % 3 - 1)  # runs of one program differ a little: the noise to measure
    return Outcome({"val_bpb": value + jitter, "peak_vram_mb": 1024.0, "training_seconds": 1.0,
                    "total_seconds": 2.0, "mfu_percent": 1.0, "total_tokens_M": 1.0,
                    "num_steps": 10}, "")


def measured(folder: Path) -> Night:
    """A night whose baseline wave ran: the baseline kept, the noise threshold known."""
    night = Night(folder)
    night.coord.plan_wave(1)
    night.drain({BASELINE: 1.0})
    night.coord.plan_wave(1)
    return night


def test_baseline_wave_keeps_the_baseline_and_measures_the_noise(tmp_path):
    night = Night(tmp_path)
    night.coord.plan_wave(1)
    queued = [j.kind for j in night.coord.state.jobs]
    assert queued == [Kind.BASELINE, Kind.NOISE, Kind.NOISE]  # 1 + --noise-runs 2
    night.drain({BASELINE: 1.0})
    rows = night.results()
    assert [(r.kind, r.status) for r in rows] == [("baseline", "keep"), ("noise", "discard"),
                                                  ("noise", "discard")]
    assert night.coord.best() == night.coord.state.base_commit
    assert night.coord.threshold() is not None and night.coord.threshold() > 0
    assert not night.coord.measuring_noise()
    assert [e.n for e in night.coord.ledger.entries()] == [1, 2, 3]  # journaled beside the rows
    assert night.shown == rows  # each row shown once, as it was written


@pytest.mark.parametrize("workers, noise_runs, runs", [(1, 2, 3), (2, 2, 4), (8, 2, 8),
                                                        (8, 0, 8), (1, 0, 1), (3, 4, 6)])
def test_the_first_wave_runs_whole_rounds_of_the_baseline_on_every_worker(tmp_path, workers,
                                                                         noise_runs, runs):
    """Whole rounds, one run on every worker each, until at least 1 + --noise-runs: a worker's
    offset needs one run, and no worker idles while another runs the wave's last round."""
    night = Night(tmp_path)
    night.coord.noise_runs = noise_runs
    night.coord.plan_wave(workers)
    jobs = night.coord.state.jobs
    assert [j.kind for j in jobs] == [Kind.BASELINE] + [Kind.NOISE] * (runs - 1)
    assert sorted(j.worker for j in jobs) == sorted(list(range(workers)) * (runs // workers))


def test_a_clear_gain_is_kept(tmp_path):
    night = measured(tmp_path)
    better = BASELINE.replace("0.04", "0.05")
    job = night.propose(better, "raise the LR")
    night.drain({BASELINE: 1.0, better: 0.95})
    kept = [r for r in night.results() if r.experiment == job.n]
    assert [r.status for r in kept] == ["keep"] and kept[0].pairs >= 1
    assert night.coord.best() == job.commit
    assert night.git.refs[f"refs/heads/{BRANCH}"] == job.commit
    assert night.coord.state.candidates == [] and night.coord.state.jobs == []


def test_a_loss_is_discarded_and_the_best_stays(tmp_path):
    night = measured(tmp_path)
    worse = BASELINE.replace("8", "2")
    job = night.propose(worse, "shallower")
    night.drain({BASELINE: 1.0, worse: 1.2})
    (row,) = [r for r in night.results() if r.experiment == job.n]
    assert row.status == "discard" and "vs parent" in row.reason
    assert night.coord.best() == night.coord.state.base_commit
    assert night.git.refs[f"refs/autoresearch/{TAG}/tried/{job.n}"] == job.commit


def test_a_crash_is_recorded_and_asks_its_agent_for_a_fix(tmp_path):
    night = measured(tmp_path)
    broken = BASELINE + "def (\n"
    job = night.propose(broken, "broken")
    night.drain({broken: None})
    (row,) = [r for r in night.results() if r.experiment == job.n]
    assert row.status == "crash" and row.reason == "syntax"
    task = night.coord.desk.next_task(0)
    assert task is not None and task.kind == Kind.FIX and task.subject == job.n
    assert night.coord.agent_runs() == 1  # the crashed experiment counts; its fix will too


def test_a_known_program_is_not_run_again(tmp_path):
    night = measured(tmp_path)
    worse = BASELINE.replace("8", "2")
    night.propose(worse, "shallower")
    assert "about to run this very program" in night.coord.desk.known_program(
        worse, night.coord.best())
    night.drain({BASELINE: 1.0, worse: 1.2})
    assert "again" in night.coord.desk.known_program(worse, night.coord.best())
    assert "nothing but comments" in night.coord.desk.known_program(BASELINE + "# hm\n",
                                                              night.coord.best())


def test_finish_after_a_crash_mid_record_writes_each_row_once(tmp_path):
    """Killed between the row and the refs: a coordinator made from state.json finishes the
    record (as a resumed loop does), and finishing it again changes nothing."""
    night = measured(tmp_path)
    worse = BASELINE.replace("8", "2")
    night.propose(worse, "shallower")
    job = night.coord.start(night.coord.take(0), 0)
    night.git.fail_set_ref = True
    with pytest.raises(KeyboardInterrupt):
        night.coord.record(job, outcome(1.2, job.n))
    assert [r.experiment for r in night.results()].count(job.n) == 1  # the row went first
    before = (tmp_path / RESULTS).read_text()

    state = load_state(tmp_path, TAG)
    (journaled,) = [j for j in state.jobs if j.id == job.id]
    assert journaled.phase == Phase.RECORDING
    resumed = Night(tmp_path, state, night.git)
    resumed.coord.finish(journaled)
    resumed.coord.finish(journaled)  # idempotent: a second crash and resume
    assert (tmp_path / RESULTS).read_text() == before  # no row appended twice
    assert [e.n for e in resumed.coord.ledger.entries()].count(job.n) == 1
    assert night.git.refs[f"refs/autoresearch/{TAG}/tried/{job.n}"] == job.commit
    assert load_state(tmp_path, TAG).jobs == []


def test_a_resumed_coordinator_goes_on_from_state_json(tmp_path):
    night = measured(tmp_path)
    better = BASELINE.replace("0.04", "0.05")
    job = night.propose(better, "raise the LR")
    first = night.coord.take(0)
    # a gain near the threshold: held as a candidate, its re-run queued (a clear one would be
    # kept on its first run)
    night.run(first, 0.998)
    assert [c.n for c in night.coord.state.candidates] == [job.n]

    resumed = Night(tmp_path, load_state(tmp_path, TAG), night.git)
    assert resumed.coord.threshold() == night.coord.threshold()
    resumed.drain({BASELINE: 1.0, better: 0.998})
    assert resumed.coord.best() == job.commit
    assert [r.status for r in resumed.results() if r.experiment == job.n] == ["keep"]


def commits_see_the_lock(night: Night) -> list[bool]:
    """Whether another thread could take the coordinator's lock during each commit the fake git
    makes from now on (a merge's commit must not hold up the other workers' decisions)."""
    free: list[bool] = []
    commit = night.git.commit_file

    def probe() -> None:
        got = night.coord.lock.acquire(timeout=2)
        free.append(got)
        if got:
            night.coord.lock.release()

    def commit_while_others_decide(*args, **kwargs):
        other = threading.Thread(target=probe)
        other.start()
        other.join()
        return commit(*args, **kwargs)

    night.git.commit_file = commit_while_others_decide
    return free


def test_a_proposal_on_an_old_best_is_rebased_before_it_runs(tmp_path):
    night = measured(tmp_path)
    better = BASELINE.replace("0.04", "0.05")
    deeper = BASELINE.replace("8", "12")
    first = night.propose(better, "raise the LR")
    second = night.propose(deeper, "deeper", worker=1)  # proposed on the baseline too
    night.drain({BASELINE: 1.0, better: 0.95})
    assert night.coord.best() == first.commit
    free = commits_see_the_lock(night)
    job = night.coord.take(1)
    assert free == [True]  # another worker could decide while the rebase committed
    assert job.id == second.id and job.parent == first.commit
    assert night.git.file_at(job.commit) == better.replace("8", "12")  # both changes
    assert "rebased onto" in job.description
    assert "rebased from" in night.git.commits[job.commit][2]


BETTER, DEEPER = BASELINE.replace("0.04", "0.05"), BASELINE.replace("8", "12")


def beaten_parent(tmp_path: Path, second: str = DEEPER) -> tuple[Night, Job, Job]:
    """Two changes proposed on the baseline and started before either is recorded; the first is
    kept, so the second (started, its parent no longer the best) is to be ported when it wins."""
    night = measured(tmp_path)
    night.propose(BETTER, "raise the LR")
    night.propose(second, "the second change")
    first = night.coord.start(night.coord.take(0), 0)
    second = night.coord.start(night.coord.take(0), 0)
    night.coord.record(first, outcome(0.95, first.n))
    assert night.coord.best() == first.commit
    return night, first, second


def port_queued(night: Night, second: Job) -> Job:
    """The PORT job queued for the second change, after its own row was written."""
    (port,) = [j for j in night.coord.state.jobs if j.kind == Kind.PORT]
    assert port.subject == second.n and port.worker == 0
    assert night.git.file_at(port.commit) == BETTER.replace("8", "12")  # both changes
    assert [r.experiment for r in night.results()].count(second.n) == 1
    assert night.coord.state.porting == []
    return port


def test_a_run_cut_off_after_the_best_moved_runs_again_as_it_was(tmp_path):
    """Killed (or void) mid-run while another keep moved the best: the run keeps its number,
    so it runs again on its own commit and parent, never rebased (a rebase changed the program
    behind the number, or dropped it as a duplicate and lost the number's row); a win is
    ported afterwards."""
    night, first, second = beaten_parent(tmp_path)
    commit, n = second.commit, second.n
    night.coord.requeue(second)  # what a restart does with a run that was under way
    again = night.coord.take(0)
    assert (again.id, again.n, again.commit, again.parent) == (second.id, n, commit,
                                                               first.parent)
    night.run(again, 0.95)
    assert [r.experiment for r in night.results()].count(n) == 1
    port_queued(night, second)


def test_a_port_is_merged_and_committed_outside_the_lock(tmp_path):
    night, first, second = beaten_parent(tmp_path)
    free = commits_see_the_lock(night)
    night.coord.record(second, outcome(0.95, second.n))
    assert free == [True]  # another worker could decide while the port committed
    port = port_queued(night, second)
    assert port.parent == first.commit and "port of #" in night.git.commits[port.commit][2]
    assert night.shown[-1].experiment == second.n  # its row shown once it was written


def test_a_port_decided_before_a_crash_is_carried_after_the_restart(tmp_path):
    """Killed after the decision was saved, before the port's merge: the row waits in
    state.json with the pending port, counts for --max-experiments, and a restart carries the
    port once, however often it is asked to."""
    night, _, second = beaten_parent(tmp_path)
    ideas = night.coord.agent_runs()
    night.git.commit_file = killed  # the port's merge commit
    with pytest.raises(KeyboardInterrupt):
        night.coord.record(second, outcome(0.95, second.n))
    state = load_state(tmp_path, TAG)
    (pending,) = state.porting
    assert pending.port.n == second.n and pending.row.experiment == second.n
    assert state.jobs == [] and second.n not in [r.experiment for r in night.results()]
    del night.git.commit_file

    resumed = Night(tmp_path, state, night.git)
    assert resumed.coord.agent_runs() == ideas  # the held row still counts
    assert resumed.coord.has_jobs(0)  # its worker's runner waits for the port
    resumed.coord.porter.carry_pending()
    resumed.coord.porter.carry_pending()  # a second restart: nothing left to carry
    port_queued(resumed, second)
    assert load_state(tmp_path, TAG).porting == []


def test_killed_while_handing_a_port_over_writes_its_row_once(tmp_path, monkeypatch):
    """Killed after the carried port's row was written, before the state was saved: the
    restart carries it again, queues it once and leaves the row as it was."""
    night, _, second = beaten_parent(tmp_path)
    monkeypatch.setattr(porter, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        night.coord.record(second, outcome(0.95, second.n))
    monkeypatch.undo()
    before = (tmp_path / RESULTS).read_text()
    assert [r.experiment for r in night.results()].count(second.n) == 1
    resumed = Night(tmp_path, load_state(tmp_path, TAG), night.git)
    resumed.coord.porter.carry_pending()
    port_queued(resumed, second)
    assert (tmp_path / RESULTS).read_text() == before


def test_a_port_that_does_not_merge_goes_to_its_agent_with_its_row(tmp_path):
    night, _, second = beaten_parent(tmp_path, BASELINE.replace("0.04", "0.06"))  # LR again
    night.coord.record(second, outcome(0.95, second.n))
    (task,) = night.coord.state.tasks
    assert task.kind == Kind.PORT and task.worker == 0 and task.row.experiment == second.n
    assert second.n not in [r.experiment for r in night.results()]  # it waits for the agent
    assert not [j for j in night.coord.state.jobs if j.kind == Kind.PORT]


def killed(*args, **kwargs):
    raise KeyboardInterrupt("kill -9")  # not an Exception: nothing in the coordinator catches it


def test_one_port_record_from_the_decision_to_the_agent_and_state_json(tmp_path):
    """A port is one record (model.Port): what policy decides, what state.json keeps (a file
    from before it carried the agent's diff reads too) and what the agent is handed."""
    old = {"rows": [], "keep": None, "tried": {}, "follow": [], "tasks": [], "log": [],
           "port": {"n": 7, "worker": 1, "commit": "c" * 40, "parent": "p" * 40,
                    "description": "raise the LR", "gain": 0.01}}
    old.update(hold=None, settle=None, stop="")
    port = decision_from(old).port
    assert port == Port(7, 1, "c" * 40, "p" * 40, "raise the LR", 0.01)
    request = AgentRequest(repo=tmp_path, program="", train_py="", history=[],
                           port=Port(7, 1, "c" * 40, "p" * 40, "raise the LR", diff="-a\n+b",
                                     conflict="<<<<<<<"))
    assert "#7 (raise the LR)" in build_context(request) and "-a\n+b" in build_context(request)


def test_a_port_under_way_does_not_use_up_max_experiments(tmp_path):
    """--max-experiments counts new ideas: one worker porting an earlier keep does not stop
    another from starting the last idea allowed; a second new idea is refused."""
    night = measured(tmp_path)
    desk, best = night.coord.desk, night.coord.best()
    assert desk.reserve(0, best, Kind.PORT.value, lambda n: f"m{n}", 1) is not None
    assert desk.reserve(1, best, "experiment", lambda n: f"m{n}", 1) is not None
    assert desk.reserve(2, best, "experiment", lambda n: f"m{n}", 1) is None



def test_a_state_json_with_fields_no_longer_written_still_loads(tmp_path):
    """Noise.runs_requested and Proposing.started_at were written and never read: they are gone
    from state.json, and a file written with them loads and goes on as before."""
    night = measured(tmp_path)
    assert night.coord.desk.reserve(0, night.coord.best(), "experiment", lambda n: f"m{n}", None)
    path = tmp_path / ".autoresearch" / TAG / "state.json"
    data = json.loads(path.read_text())
    assert "runs_requested" not in data["noise"] and "started_at" not in data["proposing"][0]
    data["noise"]["runs_requested"] = 2
    data["proposing"][0]["started_at"] = now_iso()
    path.write_text(json.dumps(data))

    state = load_state(tmp_path, TAG)
    assert state.noise == night.coord.state.noise
    assert state.proposing == night.coord.state.proposing
    resumed = Night(tmp_path, state, night.git)
    resumed.coord.desk.end_proposal(0, None)
    resumed.propose(BETTER, "raise the LR")
    resumed.drain({BASELINE: 1.0, BETTER: 0.95})
    assert resumed.coord.best() != state.base_commit


def measured_on_two(folder: Path, controls: bool = False, offsets: dict[int, float] | None = None,
                    ) -> Night:
    """A night of two workers whose baseline wave ran on both (each worker twice)."""
    night = Night(folder, controls=controls)
    night.offsets = offsets or {}
    night.coord.plan_wave(2)
    for worker in (0, 1):
        night.drain({BASELINE: 1.0}, worker)
    night.coord.plan_wave(2)
    assert not night.coord.measuring_noise()
    return night


def replica_of(night: Night, n: int) -> Job:
    (job,) = [j for j in night.coord.state.jobs if j.subject == n and j.kind == Kind.CONFIRM]
    return job


def test_a_replica_goes_to_an_idle_worker_that_has_not_run_it_ahead_of_its_proposal(tmp_path):
    night = measured_on_two(tmp_path)
    first = night.propose(BETTER, "raise the LR")
    night.run(night.coord.take(0), 0.9985)  # the grey zone: one more run of it, on any worker
    replica = replica_of(night, first.n)
    assert replica.any_worker
    mine = night.propose(BASELINE.replace("8", "9"), "deeper", worker=0)
    night.propose(BASELINE.replace("8", "7"), "shallower", worker=1)
    # worker 1 runs nothing and never ran the candidate: worker 0 leaves the replica to it
    started = night.coord.start(night.coord.take(0), 0)
    assert started.id == mine.id
    taken = night.coord.start(night.coord.take(1), 0)
    assert taken.id == replica.id and taken.worker == 1  # ahead of worker 1's own proposal
    journaled = {j.id: j for j in load_state(tmp_path, TAG).jobs}  # what a restart finds
    assert (journaled[taken.id].worker, journaled[taken.id].phase) == (1, Phase.RUNNING)
    night.done(taken, 0.9985)
    night.done(started, 1.2)
    runs = [r for r in night.results() if r.commit == first.commit[:7]]
    assert [(r.experiment, r.worker) for r in runs] == [(first.n, 0), (taken.n, 1)]
    assert runs[0].status == "keep" and night.coord.best() == first.commit


def test_a_replica_waits_for_the_busy_worker_that_has_not_run_it(tmp_path):
    """The worker that ran the candidate goes on with its own next idea; the other worker takes
    the replica as soon as it is free, ahead of its own; with nothing else to run, the first
    worker would have taken it itself."""
    night = measured_on_two(tmp_path)
    night.propose(BASELINE.replace("8", "7"), "shallower", worker=1)
    busy = night.coord.start(night.coord.take(1), 0)  # worker 1 trains
    first = night.propose(BETTER, "raise the LR")
    night.run(night.coord.take(0), 0.999)  # the grey zone
    replica = replica_of(night, first.n)
    assert night.coord.take(0).id == replica.id  # nothing else: it runs the replica itself
    mine = night.propose(BASELINE.replace("8", "9"), "deeper", worker=0)
    night.propose(BASELINE.replace("8", "6"), "shallower still", worker=1)
    assert night.coord.take(0).id == mine.id  # worker 1, busy, never ran it: left to it
    night.done(busy, 1.2)
    taken = night.coord.take(1)
    assert taken.id == replica.id and taken.worker == 1  # ahead of worker 1's own next idea


def test_a_crossover_runs_a_pair_on_two_workers_at_once_then_swaps_them(tmp_path):
    """--controls on two workers whose GPUs read 0.01 apart: the candidate's half on its worker
    and the control on the other, either may finish first; the pair's gain is corrected by the
    fitted offsets (else 0.011 would keep it at once); the next pair swaps the workers."""
    night = measured_on_two(tmp_path, controls=True, offsets={1: 0.01})
    first = night.propose(BETTER, "raise the LR")
    night.run(night.coord.take(0), 0.999)  # past the screen: pairs follow

    def pair() -> dict[Kind, int]:
        return {j.kind: j.worker for j in night.coord.state.jobs if j.subject == first.n}

    assert pair() == {Kind.CONFIRM: 0, Kind.CONTROL: 1}
    confirm, control = (night.coord.start(night.coord.take(w), 0) for w in (0, 1))
    assert (confirm.kind, control.kind) == (Kind.CONFIRM, Kind.CONTROL)
    night.done(confirm, 0.9995)  # the candidate's half first: it waits for its control
    assert load_state(tmp_path, TAG).candidates[0].pending is not None
    night.done(control, 1.0)
    (row,) = [r for r in night.results() if r.experiment == control.n]
    assert row.reason.startswith("pair 1 of") and "one more pair" in row.reason
    gain = float(row.reason.split(": ")[1].split()[0])
    assert 0.0005 < gain < 0.002  # 1.01 - 0.9995, less GPU 1's offset over GPU 0's
    assert pair() == {Kind.CONFIRM: 1, Kind.CONTROL: 0}  # swapped
    control, confirm = (night.coord.start(night.coord.take(w), 0) for w in (0, 1))
    night.done(control, 1.0)
    night.done(confirm, 0.9995)
    (own,) = [r for r in night.results() if r.experiment == first.n]
    assert own.pairs == 2 and abs(own.gain - 0.0005) < 0.001  # swapped: the offsets cancel
    assert own.status == ("keep" if own.gain_low > 0 else "discard")
    assert night.coord.state.candidates == [] and night.coord.state.jobs == []


def test_a_crossover_half_that_crashes_first_waits_for_the_other(tmp_path):
    night = measured_on_two(tmp_path, controls=True)
    first = night.propose(BETTER, "raise the LR")
    night.run(night.coord.take(0), 0.998)
    confirm, control = (night.coord.start(night.coord.take(w), 0) for w in (0, 1))
    night.done(confirm, None)
    assert [c.n for c in night.coord.state.candidates] == [first.n]  # its control still runs
    night.done(control, 1.0)
    rows = {r.experiment: r for r in night.results()}
    assert rows[first.n].status == "discard" and "crashed" in rows[first.n].reason
    assert rows[confirm.n].status == "crash" and rows[control.n].status == "discard"
    assert night.git.refs[f"refs/autoresearch/{TAG}/tried/{confirm.n}"] == first.commit
    assert night.coord.state.candidates == [] and night.coord.state.jobs == []


def test_a_worker_stays_while_a_crossover_may_still_need_it(tmp_path):
    """With --controls on two workers a candidate's next pair puts a half on the other worker:
    that worker must not leave while a candidate waits (on one worker, or by the default rule,
    nothing comes to a worker that has nothing of its own)."""
    night = measured_on_two(tmp_path, controls=True)
    assert not night.coord.may_cross()
    first = night.propose(BETTER, "raise the LR", worker=1)
    assert night.coord.may_cross()  # queued: its run may make a candidate
    assert not night.coord.may_cross(max_experiments=0)  # held back: it never starts
    night.run(night.coord.take(1), 0.998)  # past the screen: pairs follow
    assert night.coord.may_cross() and [c.n for c in night.coord.state.candidates] == [first.n]
    default = measured_on_two(tmp_path / "default")
    default.propose(BETTER, "raise the LR", worker=1)
    assert not default.coord.may_cross()


def test_a_worker_stays_while_a_port_that_may_cross_is_carried_or_asked_for(tmp_path):
    """A port decided on worker 0 is merged outside the lock, or asked of its agent on a
    conflict: until it is queued no job or candidate shows it, yet its run will put a
    crossover half on worker 1, so worker 1 must not leave meanwhile (it did, and the night
    hung on a control no worker would run)."""
    night = measured_on_two(tmp_path, controls=True)
    base = night.coord.best()
    port = Port(5, 0, base, base, "raise the LR")
    row = night.results()[0]
    night.coord.state.porting.append(Porting(port, row))
    assert night.coord.may_cross()
    night.coord.state.porting.clear()
    assert not night.coord.may_cross()
    night.coord.state.tasks.append(Task(Kind.PORT, 0, 5, base, base, "raise the LR", "<<<<<<<"))
    assert night.coord.may_cross()


def verified_crossover(folder: Path, monkeypatch, private_gain: float) -> tuple[Night, Job, list]:
    """--controls on two workers with held-out verification (the private split's score stubbed:
    the candidate's weights `private_gain` better than the parent's); a crossover whose control
    finishes after the candidate's half and completes a clear gain. The night, the candidate's
    job and the names of the run folders scored."""
    from autoresearch.verify import private

    scored, candidate = [], [BETTER]

    def score(repo, run_dir, gpu, sealed):
        scored.append(run_dir.name)
        return 1.0 - private_gain if run_dir.name.endswith(candidate[-1][:7]) else 1.0

    monkeypatch.setattr(private, "score", score)
    monkeypatch.setattr(private.Verifier, "_checkpointed", lambda self, run_dir: True)
    night = Night(folder, controls=True)
    night.coord.verifier = private.Verifier(folder, folder / "cache.json", 0.0, False,
                                            lambda message, style="": None, {0: None, 1: None})
    night.coord.plan_wave(2)
    for worker in (0, 1):
        night.drain({BASELINE: 1.0}, worker)
    night.coord.plan_wave(2)
    first = night.propose(BETTER, "raise the LR")
    candidate.append(first.commit)
    night.run(night.coord.take(0), 0.999)
    confirm, control = (night.coord.start(night.coord.take(w), 0) for w in (0, 1))
    night.done(confirm, 0.993)
    night.done(control, 1.0)  # completes the pair: a clear public gain
    return night, first, scored


def test_a_keep_decided_by_its_control_is_verified_on_the_candidates_own_weights(tmp_path,
                                                                                 monkeypatch):
    """A crossover's control may decide the keep: the held-out check scores the candidate's own
    run (whose weights waited with its row), not the control's (the parent's code)."""
    night, first, scored = verified_crossover(tmp_path, monkeypatch, 0.01)
    assert scored[-1] == f"{first.n:04d}-{first.commit[:7]}"
    (own,) = [r for r in night.results() if r.experiment == first.n]
    assert own.status == "keep" and own.private_bpb == 0.99
    assert night.coord.best() == first.commit


def test_a_refused_keep_leaves_tried_refs_of_the_candidates_runs_only(tmp_path, monkeypatch):
    night, first, _ = verified_crossover(tmp_path, monkeypatch, 0.0)
    rows = {r.experiment: r for r in night.results()}
    assert rows[first.n].status == "discard" and "refused" in rows[first.n].reason
    tried = {n: c for ref, c in night.git.refs.items() if "/tried/" in ref
             for n in [int(ref.rsplit("/", 1)[1])]}
    assert {n for n, c in tried.items() if c == first.commit} == \
        {n for n, r in rows.items() if r.commit == first.commit[:7]}
    assert not [n for n, r in rows.items() if r.kind == "control" and n in tried]
    assert night.coord.best() == night.coord.state.base_commit

"""Honest accounting: every run that happened has its row, nothing runs twice, the limits hold.

Workers are ordered by gates, not by speed: an agent step waits for what another worker did,
and a run waits for a file that an agent step creates (code the agent put at the top of its
train.py), so each test plays one interleaving every time.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loop_helpers import (
    AGENT_LOOP,
    RecordingUI,
    ScriptedAgent,
    check_git_matches_results,
    edit,
    git,
    make_repo,
    run_loop,
    tag_rows,
)

from autoresearch.agents import Proposal, Usage
from autoresearch.config import Options
from autoresearch.errors import UserError
from autoresearch.execution.gpus import Slot
from autoresearch.ledger.results import COLUMNS
from autoresearch.ledger.state import load_state, request_stop
from autoresearch.pipeline import MAX_REJECTIONS
from autoresearch.scheduler import Loop
from autoresearch.stops import SAME_SIGINT_S, Signals, Stops

TAG = "t"
WAIT = 120.0  # seconds a gate waits at most: a hung test fails instead of hanging


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def gpus(n):
    return [Slot(k, str(k), "NVIDIA H200") for k in range(n)]


def gate_code(gate: Path, free: int = 0) -> str:
    """Lines that make a run of this train.py wait until `gate` exists; the first `free` runs
    of it do not wait (they are counted in a file beside the gate)."""
    count = str(gate) + ".runs"
    return (f"import os as _os, time as _time\n_until = _time.time() + {WAIT}\n"
            f"with open({count!r}, 'a+') as _f:\n    _f.seek(0)\n    _runs = len(_f.read())\n"
            f"    _f.write('x')\n"
            f"while _runs >= {free} and not _os.path.exists({str(gate)!r}) "
            f"and _time.time() < _until:\n"
            f"    _time.sleep(0.05)\n")


def gated(step, gate: Path, free: int = 0):
    """An agent step whose train.py's runs wait for `gate` (all but the first `free`)."""
    def run(request):
        proposal = step(request)
        path = request.repo / "train.py"
        path.write_text(gate_code(gate, free) + path.read_text())
        return proposal
    return run


def wait_for(predicate, what: str):
    until = time.monotonic() + WAIT
    while time.monotonic() < until:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kept_experiment(repo: Path) -> bool:
    return any(r.status == "keep" and r.kind == "experiment" for r in tag_rows(repo))


def events(repo: Path) -> str:
    return (repo / ".autoresearch" / TAG / "events.log").read_text()


def port_behind_a_fix(repo: Path, tmp_path: Path, port_steps: list, ui: RecordingUI,
                      porter: int = 0) -> str:
    """The porter's first idea crashes at the limit (its fix may not start), then its second
    beats its parent after the other worker moved the best and does not merge: the port goes to
    the porter's agent, behind the fix in its task list. The loop's reason to stop."""
    gate = tmp_path / "gate"

    def second_idea(request):
        gate.touch()  # the crash may finish now: its fix task comes first
        wait_for(lambda: kept_experiment(repo), "the other worker's keep")
        return edit("VAL_BPB down", VAL_BPB=0.9)(request)

    agent0 = ScriptedAgent([gated(edit("a crash", MODE="crash"), gate), second_idea,
                            *port_steps])

    def other_idea(request):
        wait_for(lambda: len(agent0.requests) >= 2, "the porter's second proposal")
        return edit("VAL_BPB further down", VAL_BPB=0.85)(request)

    agents = [agent0, ScriptedAgent([other_idea])]
    return Loop(repo, limited(3), agents[porter:] + agents[:porter], ui, slots=gpus(2)).run()


def limited(max_experiments: int) -> Options:
    return Options(tag=TAG, noise_runs=1, timeout=WAIT, grace=0.5, backoff=0, sample=False,
                   max_experiments=max_experiments)


def port(request):
    assert request.port is not None and "<<<<<<<" in request.port.conflict
    return edit("ported: both", VAL_BPB=0.8)(request)


def check_ported(repo: Path) -> None:
    """The ported run has its row, the port was run and kept, only the fix is left undone."""
    rows = tag_rows(repo)
    (ported,) = [r for r in rows if r.description == "VAL_BPB down"]
    assert "ported by the agent" in ported.reason
    assert [(r.kind, r.status) for r in rows if r.description == "ported: both"] == [
        ("port", "keep")]
    state = load_state(repo, TAG)
    assert [(t.kind.value, t.row) for t in state.tasks] == [("fix", None)]  # the limit holds it
    assert sum(r.kind in ("experiment", "fix") for r in rows) == 3
    check_git_matches_results(repo, TAG)


# the quick run plays the same night cut by a kill during the port (below): the port behind
# the fix is handed to the agent in that run too, and the same command finishes it at the limit
@pytest.mark.slow
def test_a_port_behind_a_pending_fix_at_the_limit_gets_its_row(repo, tmp_path):
    assert port_behind_a_fix(repo, tmp_path, [port], RecordingUI()) == \
        "reached --max-experiments 3"
    check_ported(repo)


class Killed(BaseException):
    """kill -9, as far as the loop can tell: nothing catches it, no clean-up code runs."""


@pytest.mark.parametrize("porter, workers", [pytest.param(0, 2, marks=pytest.mark.slow), (1, 1)])
def test_a_port_cut_by_a_kill_gets_its_row_from_the_same_command(repo, tmp_path, porter,
                                                                 workers):
    """The loop dies while an agent ports the change: the same command again ports it, with
    fewer workers too (the port moves to one that is left)."""
    def killed(request):
        raise Killed("while porting")

    with pytest.raises(Killed):
        port_behind_a_fix(repo, tmp_path, [killed], RecordingUI(), porter)
    (task,) = [t for t in load_state(repo, TAG).tasks if t.kind.value == "port"]
    assert task.row.description == "VAL_BPB down" and task.worker == porter
    agent = ScriptedAgent([port])
    assert Loop(repo, limited(3), [agent] * workers, RecordingUI(),
                slots=gpus(workers)).run() == "reached --max-experiments 3"
    check_ported(repo)


def test_a_proposal_that_its_rebase_empties_is_not_run(repo, tmp_path):
    """A proposal made on the old best whose change was kept meanwhile (by a candidate that was
    being confirmed while it waited) is, once rebased, the best itself: dropped, not run, not
    counted."""
    gate = tmp_path / "gate"

    def same_change(request):
        gate.touch()  # the candidate's runs may finish now
        return edit("VAL_BPB down, again", VAL_BPB=0.9)(request)

    steps = [gated(edit("VAL_BPB down", VAL_BPB=0.9), gate), same_change,
             edit("a bonus", BONUS=-0.05)]
    _, agent, ui = run_loop(repo, steps, max_experiments=2, prefetch=True)
    rows = tag_rows(repo)
    assert not [r for r in rows if r.description.startswith("VAL_BPB down, again")]
    assert [(r.kind, r.status, r.description) for r in rows if r.kind == "experiment"] == [
        ("experiment", "keep", "VAL_BPB down"), ("experiment", "keep", "a bonus")]
    assert "dropped after its rebase, not run:" in events(repo)
    assert "not run: once rebased" in agent.requests[2].feedback
    assert load_state(repo, TAG).duplicates == 1
    check_git_matches_results(repo, TAG)


def test_a_proposal_of_a_candidate_being_confirmed_is_not_run(repo, tmp_path):
    """The program of a candidate waiting for its confirmation, proposed again: rejected as a
    duplicate at once (its row, and so its journal entry, waits for the confirmation)."""
    gate = tmp_path / "gate"

    def same_program(request):
        wait_for(lambda: load_state(repo, TAG).candidates, "the candidate")
        return gated(edit("VAL_BPB down, again", VAL_BPB=0.9), gate, free=1)(request)

    class OpenAtTheRejection(RecordingUI):
        def event(self, text, style=""):
            super().event(text, style)
            if "proposal rejected" in text:
                gate.touch()  # the confirmation may finish now

    steps = [gated(edit("VAL_BPB down", VAL_BPB=0.9), gate, free=1), same_program,
             edit("a bonus", BONUS=-0.05)]
    ui = OpenAtTheRejection()
    agent = ScriptedAgent(steps)
    opts = Options(tag=TAG, noise_runs=0, timeout=WAIT, grace=0.5, backoff=0, sample=False,
                   max_experiments=2)
    Loop(repo, opts, agent, ui, slots=gpus(1)).run()
    (rejection,) = [e for e in ui.events if "proposal rejected" in e]
    assert "not run: this is #2 again, being confirmed now: VAL_BPB down" in rejection
    assert [r.description[:7] for r in tag_rows(repo) if r.kind == "experiment"] == [
        "VAL_BPB", "a bonus"]
    check_git_matches_results(repo, TAG)


def test_a_limit_reached_already_starts_no_queued_proposal(repo):
    """A proposal queued by a loop that was stopped does not start under a --max-experiments
    that the experiments done already reach: one line says so, and it stays queued for a run
    with a higher limit."""
    def third_then_stop(request):
        proposal = edit("three", VAL_BPB=1.3)(request)
        request_stop(repo, TAG, now=False)
        return proposal

    run_loop(repo, [edit("one", VAL_BPB=1.1), edit("two", VAL_BPB=1.2), third_then_stop],
             max_experiments=None)
    assert [r.description for r in tag_rows(repo)] == ["baseline", "one", "two"]

    reason, agent, ui = run_loop(repo, [], max_experiments=1)
    assert reason == "reached --max-experiments 1" and not agent.requests
    assert [r.description for r in tag_rows(repo)] == ["baseline", "one", "two"]
    (line,) = [e for e in ui.events if "--max-experiments 1 is reached already" in e]
    assert line == ("--max-experiments 1 is reached already (2 experiments): nothing new starts; "
                    "1 queued proposal waits for a run with a higher limit")
    assert [j.description for j in load_state(repo, TAG).jobs] == ["three"]

    run_loop(repo, [], max_experiments=3)
    assert [r.description for r in tag_rows(repo)] == ["baseline", "one", "two", "three"]
    check_git_matches_results(repo, TAG)


def test_damaged_rows_are_warned_about_and_still_counted(repo):
    """A row damaged by hand and a torn one are named by line, once each, on the console and in
    events.log; the experiments they record still count against --max-experiments."""
    run_loop(repo, [edit(f"idea {k}", VAL_BPB=1.1 + k / 100) for k in range(3)])
    path = repo / "results.tsv"
    lines = path.read_text().splitlines()  # header, baseline, #2, #3, #4
    cells = lines[3].split("\t")
    lines[3] = "\t".join(cells[:1] + ["n/a"] + cells[2:])
    lines[4] = "\t".join(lines[4].split("\t")[:7])  # cut short: the kind is its last cell
    path.write_text("\n".join(lines) + "\n")

    _, agent, ui = run_loop(repo, [edit("idea 3", VAL_BPB=1.2)], max_experiments=4)
    assert len(agent.requests) == 1  # #3 and #4 were experiments too
    warned = [e for e in ui.events if e.startswith("warning: ")]
    assert warned == [
        "warning: results.tsv line 4: val_bpb 'n/a' is not a number; row skipped",
        f"warning: results.tsv line 5: 7 cells, but the header names {len(COLUMNS)} columns (a "
        "torn row); row skipped"]
    assert events(repo).count("results.tsv line 5: 7 cells") == 1


def test_a_file_the_agent_committed_is_kept_in_undone(repo):
    """An agent that commits a file of its own in its work tree: the proposal is rejected and
    the file is put back, with a copy in the undo folder."""
    def commit_notes(request):
        edit("with notes", VAL_BPB=0.9)(request)
        (request.repo / "notes.md").write_text("my notes\n")
        git(request.repo, "add", "notes.md", "train.py")
        git(request.repo, "commit", "-q", "-m", "notes")
        return Proposal("with notes", Usage(cost_usd=0.0))

    _, _, ui = run_loop(repo, [commit_notes, edit("plain", VAL_BPB=0.95)], max_experiments=1)
    (copy,) = (repo / ".autoresearch" / TAG / "undone").glob("w0-*/notes.md")
    assert copy.read_text() == "my notes\n"
    assert any("proposal rejected: changed files other than train.py: notes.md" in e
               for e in ui.events)
    assert [r.description for r in tag_rows(repo) if r.kind == "experiment"] == ["plain"]
    assert not (repo / ".autoresearch" / TAG / "trees" / "0" / "notes.md").exists()


def test_the_stop_for_unusable_proposals_counts_every_one(repo, tmp_path):
    """Worker 0 reaches the limit of unusable proposals while worker 1's agent is still at work;
    its proposal is unusable too, and the stop message counts it (the runs under way finish
    first: they wait for a gate that the 13th rejection opens)."""
    gate = tmp_path / "gate"
    (repo / "train.py").write_text(gate_code(gate) + (repo / "train.py").read_text())
    git(repo, "commit", "-qam", "runs wait for the gate")

    def nothing(request):
        return Proposal("nothing", Usage(cost_usd=0.0))

    def late_nothing(request):
        wait_for(lambda: loop.error is not None, "worker 0's stop")
        return nothing(request)

    class UI(RecordingUI):
        def event(self, text, style=""):
            super().event(text, style)
            if sum("proposal rejected" in e for e in self.events) == MAX_REJECTIONS + 1:
                gate.touch()

    opts = Options(tag=TAG, noise_runs=1, timeout=WAIT, grace=0.5, backoff=0, sample=False)
    loop = Loop(repo, opts, [ScriptedAgent([nothing] * MAX_REJECTIONS),
                             ScriptedAgent([late_nothing])], UI(), slots=gpus(2))
    with pytest.raises(UserError, match=f"^{MAX_REJECTIONS + 1} proposals in a row were unusable"):
        loop.run()
    assert events(repo).count("proposal rejected") == MAX_REJECTIONS + 1


FORWARDER = """
import signal, subprocess, sys, time
child = subprocess.Popen(sys.argv[1:])
def forward(*_):  # as `uv run` does, a moment later
    time.sleep(0.2)
    child.send_signal(signal.SIGINT)
signal.signal(signal.SIGINT, forward)
sys.exit(child.wait())
"""


def ctrl_c_the_group(repo: Path, pids: Path, train_seconds: float, presses: int) -> str:
    """`agent_loop.py run` under a parent that forwards SIGINT, no terminal; once a run is under
    way, SIGINT to the whole process group `presses` times, a second and more apart. Its output."""
    started = len(pids.read_text().split()) if pids.exists() else 0
    env = dict(os.environ, FAKE_PID_FILE=str(pids), FAKE_TRAIN_SECONDS=str(train_seconds))
    command = [sys.executable, "-c", FORWARDER, sys.executable, str(AGENT_LOOP), "run", "--tag",
               TAG, "--agent", "sweep", "--noise-runs", "0", "--max-experiments", "3",
               "--no-sample", "-C", "."]
    proc = subprocess.Popen(command, cwd=repo, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) > started, "a run")
        for press in range(presses):
            if press:
                time.sleep(SAME_SIGINT_S + 0.5)
            os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=WAIT)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_process_group_sigint_is_one_ctrl_c(repo, tmp_path):
    """SIGINT to the process group of a loop whose parent forwards it reaches the loop twice at
    once: one Ctrl-C, the run under way finishes. A second SIGINT, later, aborts the run."""
    pids = tmp_path / "pids"
    out = ctrl_c_the_group(repo, pids, train_seconds=4, presses=1)
    assert "loop stopped: stop requested (Ctrl-C)" in out, out
    assert [(r.kind, r.status) for r in tag_rows(repo)] == [("baseline", "keep")]

    out = ctrl_c_the_group(repo, pids, train_seconds=WAIT, presses=2)
    assert "loop stopped: aborted" in out, out
    assert [(r.kind, r.status) for r in tag_rows(repo)] == [("baseline", "keep")]


def test_a_forwarded_sigint_is_the_same_ctrl_c_and_a_later_one_aborts(tmp_path):
    """The loop's handlers as the process-group test above meets them, in this process: a
    SIGINT and its copy forwarded a moment later are one Ctrl-C (finish the runs under way); a
    SIGINT a second later is the second Ctrl-C (abort them)."""
    stops = Stops(tmp_path, TAG, None)
    with Signals(stops):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # as FORWARDER (and `uv run`) passes it on
        os.kill(os.getpid(), signal.SIGINT)
        assert stops.stopping == "stop requested (Ctrl-C)" and stops.closing
        assert not stops.aborting
        time.sleep(SAME_SIGINT_S + 0.1)
        os.kill(os.getpid(), signal.SIGINT)
        assert stops.aborting


def test_a_run_cut_by_a_kill_runs_again_under_a_lower_limit(repo, monkeypatch):
    """A run that started has its number and its folder: killed, it runs again on the next
    `run`, even one whose --max-experiments the experiments before it reach."""
    from autoresearch.execution.local import LocalExecutor

    real, calls = LocalExecutor.execute, []

    def dies_on_the_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Killed("while training")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LocalExecutor, "execute", dies_on_the_third)
    with pytest.raises(Killed):
        run_loop(repo, [edit("one", VAL_BPB=1.1), edit("two", VAL_BPB=1.2)])
    monkeypatch.setattr(LocalExecutor, "execute", real)
    (job,) = load_state(repo, TAG).jobs
    assert (job.n, job.description) == (3, "two")

    _, agent, ui = run_loop(repo, [], max_experiments=1)
    assert [r.description for r in tag_rows(repo)] == ["baseline", "one", "two"]
    assert not agent.requests
    check_git_matches_results(repo, TAG)

"""One experiment and the forever loop, in process, against the fake trainer.

Covers the bookkeeping of keep / discard / crash in git (branch, side refs) and results.tsv,
the noise threshold and confirmation runs, fix attempts, rejected proposals, stop conditions
and the clear errors for states the loop cannot start from.
"""

import json
import os
import signal
import time

import pytest
from loop_helpers import (
    RecordingUI,
    ScriptedAgent,
    check_git_matches_results,
    edit,
    git,
    make_repo,
)

from autoresearch.agents import AgentRefused, Proposal, Usage
from autoresearch.errors import UserError
from autoresearch.execution.procs import pid_alive
from autoresearch.ledger.results import COLUMNS, read_results
from autoresearch.ledger.state import load_state, request_stop
from autoresearch.loop import MAX_REJECTIONS, Loop, Options

TAG = "t"


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def run_loop(repo, steps, **options):
    opts = dict(tag=TAG, noise_runs=0, timeout=20, grace=0.5, backoff=0, sample=False,
                max_experiments=sum(1 for _ in steps))
    opts.update(options)
    agent, ui = ScriptedAgent(steps), RecordingUI()
    reason = Loop(repo, Options(**opts), agent, ui).run()
    return reason, agent, ui


def rows(repo):
    return [r for r in read_results(repo / "results.tsv") if r.tag == TAG]


def summary(repo):
    return [(r.experiment, r.kind, r.status, r.val_bpb, r.reason) for r in rows(repo)]


def head(repo):
    return git(repo, "rev-parse", f"autoresearch/{TAG}")


def test_keep_discard_crash_bookkeeping(repo):
    base = git(repo, "rev-parse", "HEAD")
    (repo / "notes.txt").write_text("untracked notes\n")
    (repo / "program.md").write_text("# program\nHuman steering, not committed.\n")
    steps = [edit("lower val", VAL_BPB=0.9), edit("worse val", VAL_BPB=0.95),
             edit("blow the memory", MODE="oom")]
    reason, agent, ui = run_loop(repo, steps)
    assert reason == "reached --max-experiments 3"

    assert [(n, kind, status, val) for n, kind, status, val, _ in summary(repo)] == [
        (1, "baseline", "keep", 1.0), (2, "experiment", "keep", 0.9),
        (3, "experiment", "discard", 0.95), (4, "experiment", "crash", 0.0)]
    r = rows(repo)
    assert r[0].commit == base[:7] and r[0].description == "baseline"
    assert r[3].reason == "oom" and r[3].memory_gb == 0.0 and r[1].memory_gb == 2.0
    assert r[1].profile == "cpu" and r[1].num_steps == 3 and r[1].agent == "scripted"
    assert r[1].cost_usd == 0.01 and r[1].run_dir == f"runs/0002-{r[1].commit}"
    lines = (repo / "results.tsv").read_text().splitlines()
    assert lines[0].split("\t") == COLUMNS
    assert lines[4].split("\t")[:4] == [r[3].commit, "0.000000", "0.0", "crash"]

    # git: the branch sits on the kept commit; the others are kept on side refs
    assert head(repo).startswith(r[1].commit)
    assert git(repo, "rev-parse", "HEAD") == head(repo)
    assert git(repo, "rev-parse", f"{r[1].commit}^") == base
    assert git(repo, "log", "-1", "--format=%s", r[1].commit) == "lower val"
    for row in r[2:]:
        assert git(repo, "rev-parse", f"refs/autoresearch/{TAG}/tried/{row.experiment}") \
            .startswith(row.commit)
    check_git_matches_results(repo, TAG)
    # nobody else's files were touched by three reverts
    assert (repo / "notes.txt").read_text() == "untracked notes\n"
    assert "Human steering" in (repo / "program.md").read_text()
    assert "VAL_BPB = 0.9" in (repo / "train.py").read_text()

    # run directories: log, code, metrics; weights only for kept runs
    run2, run3 = repo / r[1].run_dir, repo / r[2].run_dir
    assert "val_bpb:          0.900000" in (run2 / "run.log").read_text()
    assert "VAL_BPB = 0.9" in (run2 / "train.py").read_text()
    assert json.loads((run2 / "metrics.json").read_text())["summary"]["val_bpb"] == 0.9
    assert (run2 / "model.pt").exists() and not (run3 / "model.pt").exists()

    # what the agent was told: the best code and the history so far
    first, third = agent.requests[0], agent.requests[2]
    assert first.best_val_bpb == 1.0 and first.noise_threshold == 0.001 and first.experiment == 2
    assert "Human steering" in first.program
    assert "VAL_BPB = 0.9" in third.train_py and len(third.history) == 3
    assert [row.experiment for row in ui.rows] == [1, 2, 3, 4]
    assert (repo / ".autoresearch" / TAG / "events.log").exists()
    live = json.loads((repo / ".autoresearch" / TAG / "live.json").read_text())
    assert live["phase"] == "idle" and live["best_val_bpb"] == 0.9


def test_noise_threshold_and_confirmation(repo, tmp_path, monkeypatch):
    offsets = tmp_path / "offsets"
    # runs 1-3 baseline + noise; 4-5 a grey-zone gain confirmed; 6-7 one not confirmed; 8 big
    offsets.write_text("0\n0.004\n-0.004\n0\n0\n0\n0.01\n0\n")
    monkeypatch.setenv("FAKE_OFFSETS_FILE", str(offsets))
    steps = [edit("small gain", VAL_BPB=0.99), edit("lucky run", VAL_BPB=0.98),
             edit("big gain", VAL_BPB=0.9)]
    run_loop(repo, steps, noise_runs=2)
    assert [(n, kind, status, round(val, 6)) for n, kind, status, val, _ in summary(repo)] == [
        (1, "baseline", "keep", 1.0), (2, "noise", "discard", 1.004),
        (3, "noise", "discard", 0.996), (4, "experiment", "keep", 0.99),
        (5, "confirm", "keep", 0.99), (6, "experiment", "discard", 0.98),
        (7, "confirm", "discard", 0.99), (8, "experiment", "keep", 0.9)]
    state = load_state(repo, TAG)
    assert state.noise["threshold"] == pytest.approx(0.008)
    assert state.noise["values"] == pytest.approx([1.0, 1.004, 0.996])
    assert state.noise["spread"] == pytest.approx(0.008) and state.noise["floor"] == 0.001
    assert state.best_val_bpb == 0.9
    r = rows(repo)
    assert r[4].commit == r[3].commit and r[6].commit == r[5].commit
    assert "not confirmed" in r[5].reason and "confirmed" in r[3].reason
    assert git(repo, "rev-parse", f"refs/autoresearch/{TAG}/tried/6").startswith(r[5].commit)
    assert git(repo, "rev-parse", f"{r[7].commit}^").startswith(r[3].commit)
    check_git_matches_results(repo, TAG)


def test_noise_floor_when_runs_agree(repo):
    run_loop(repo, [], noise_runs=2, noise_floor=0.002, max_experiments=0)
    noise = load_state(repo, TAG).noise
    assert noise["threshold"] == 0.002 and noise["std"] == 0.0


def test_crash_gets_fix_attempts(repo):
    base = git(repo, "rev-parse", "HEAD")
    steps = [edit("buggy idea", MODE="crash"), edit("fixed the bug", MODE="ok", VAL_BPB=0.9)]
    run_loop(repo, steps, max_experiments=2)
    assert [(n, kind, status, reason) for n, kind, status, _, reason in summary(repo)] == [
        (1, "baseline", "keep", ""), (2, "experiment", "crash", "other"),
        (3, "fix", "keep", rows(repo)[2].reason)]
    r = rows(repo)
    assert git(repo, "rev-parse", f"{r[2].commit}^") == base  # the fix sits on the best commit


def test_fix_attempts_are_bounded(repo):
    steps = [edit("buggy idea", MODE="crash"), edit("fix 1", VAL_BPB=0.8),
             edit("fix 2", VAL_BPB=0.7), edit("new idea", VAL_BPB=0.95)]
    reason, agent, _ = run_loop(repo, steps, max_fix_attempts=2)
    assert [(kind, status) for _, kind, status, _, _ in summary(repo)] == [
        ("baseline", "keep"), ("experiment", "crash"), ("fix", "crash"), ("fix", "crash"),
        ("experiment", "keep")]
    fix_request = agent.requests[1]
    assert "boom: a bug in the edit" in fix_request.crash_log
    assert "MODE = 'crash'" in fix_request.train_py  # the agent fixes the crashed code
    assert agent.requests[3].crash_log is None
    assert "MODE = 'crash'" not in agent.requests[3].train_py
    check_git_matches_results(repo, TAG)


def test_crash_classes_and_no_orphans(repo, tmp_path, monkeypatch):
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    steps = [edit("import", MODE="import"), edit("nan", MODE="nan"),
             edit("stray", MODE="stray"), edit("nan value", MODE="nanvalue"),
             edit("hang", MODE="hang"), edit("orphan", MODE="orphan", VAL_BPB=0.5)]
    run_loop(repo, steps, max_fix_attempts=0, timeout=2)
    assert [(status, reason) for _, _, status, _, reason in summary(repo)][1:6] == [
        ("crash", "import"), ("crash", "nan"), ("crash", "other"), ("crash", "nan"),
        ("crash", "timeout")]
    assert rows(repo)[6].status == "keep"
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) >= 9 and not [p for p in pids if pid_alive(p)]


def test_rejections_are_logged_not_recorded(repo):
    def no_edit(request):
        return Proposal("did nothing", Usage(cost_usd=0.5))

    def touch_harness(request):
        (request.repo / "prepare.py").write_text("# easier metric\n")
        return edit("cheat")(request)

    def syntax_error(request):
        (request.repo / "train.py").write_text("def broken(:\n")
        return Proposal("broken", Usage())

    def refuse(request):
        raise AgentRefused("no idea", Usage(cost_usd=0.25))

    steps = [no_edit, touch_harness, syntax_error, refuse, edit("good", VAL_BPB=0.9)]
    run_loop(repo, steps, max_experiments=1)
    assert [(n, kind) for n, kind, _, _, _ in summary(repo)] == [(1, "baseline"), (2, "experiment")]
    events = (repo / ".autoresearch" / TAG / "events.log").read_text()
    assert events.count("rejected") == 4
    assert "train.py is unchanged" in events and "prepare.py (restored)" in events
    assert "does not compile" in events and "no idea" in events
    state = load_state(repo, TAG)
    assert state.rejected_total == 4 and state.rejections == 0
    assert state.cost_usd == pytest.approx(0.5 + 0.01 + 0.25 + 0.01)
    assert state.cost_unknown  # the syntax-error proposal reported no cost
    assert (repo / "prepare.py").read_text() == "# the fixed harness\n"


def test_endless_rejections_stop_the_loop(repo):
    steps = [lambda request: Proposal("nothing", Usage(cost_usd=0.0))] * MAX_REJECTIONS
    with pytest.raises(UserError, match="proposals in a row were unusable"):
        run_loop(repo, steps, max_experiments=5)
    assert load_state(repo, TAG).inflight is None
    assert git(repo, "status", "--porcelain") == ""


def test_max_cost_and_stop_flag(repo):
    def edit_then_stop(request):
        proposal = edit("then stop", VAL_BPB=0.9)(request)
        request_stop(request.repo, TAG, now=False)
        return proposal

    reason, _, _ = run_loop(repo, [edit_then_stop, edit("never asked")], max_experiments=None)
    assert reason == "stop requested"
    assert [kind for _, kind, _, _, _ in summary(repo)] == ["baseline", "experiment"]
    assert not (repo / ".autoresearch" / TAG / "stop").exists()

    def pricey(request):
        edit("pricey", VAL_BPB=0.8)(request)
        return Proposal("pricey", Usage(cost_usd=5.0))

    reason, _, _ = run_loop(repo, [pricey, edit("never asked")], max_cost=1.0,
                            max_experiments=None)
    assert reason.startswith("reached --max-cost $1")
    assert [kind for _, kind, _, _, _ in summary(repo)] == ["baseline", "experiment", "experiment"]


def test_stop_now_drops_the_run_and_the_next_run_repeats_it(repo):
    def edit_then_stop_now(request):
        proposal = edit("interrupted idea", VAL_BPB=0.9)(request)
        request_stop(request.repo, TAG, now=True)
        return proposal

    reason, _, _ = run_loop(repo, [edit_then_stop_now], max_experiments=None)
    assert reason.startswith("aborted")
    assert [kind for _, kind, _, _, _ in summary(repo)] == ["baseline"]
    job = load_state(repo, TAG).inflight
    assert job["phase"] == "running" and job["n"] == 2
    run_loop(repo, [], max_experiments=1)  # resumes: runs #2, asks the agent for nothing
    r = rows(repo)
    assert [(row.experiment, row.status) for row in r] == [(1, "keep"), (2, "keep")]
    assert r[1].commit == job["commit"][:7] and r[1].description == "interrupted idea"
    check_git_matches_results(repo, TAG)


def test_ctrl_c_once_finishes_the_experiment(repo):
    def edit_then_ctrl_c(request):
        os.kill(os.getpid(), signal.SIGINT)
        return edit("finish me", VAL_BPB=0.9)(request)

    reason, _, ui = run_loop(repo, [edit_then_ctrl_c, edit("never")], max_experiments=None)
    assert reason == "stop requested"
    assert [row.status for row in rows(repo)] == ["keep", "keep"]
    assert any("Ctrl-C again" in e for e in ui.events)


def test_ctrl_c_twice_abandons_the_proposal(repo):
    def edit_then_ctrl_c_twice(request):
        edit("half done", VAL_BPB=0.9)(request)
        (request.repo / "stray.txt").write_text("agent scratch\n")
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the second Ctrl-C interrupts the agent call")

    reason, _, _ = run_loop(repo, [edit_then_ctrl_c_twice], max_experiments=None)
    assert reason.startswith("aborted")
    assert load_state(repo, TAG).inflight is None
    assert not (repo / "stray.txt").exists()
    assert "VAL_BPB = 1.0" in (repo / "train.py").read_text()
    assert git(repo, "status", "--porcelain") == ""


def test_ctrl_c_twice_during_training_kills_the_run_and_records_nothing(repo, monkeypatch):
    class CtrlC(RecordingUI):
        def update(self, live):
            super().update(live)
            if live.get("experiment") == 2 and live.get("step") == 0:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

    opts = Options(tag=TAG, noise_runs=0, timeout=60, grace=0.5, sample=False)
    loop = Loop(repo, opts, ScriptedAgent([edit("slow idea", VAL_BPB=0.9)]), CtrlC())
    monkeypatch.setenv("FAKE_TRAIN_SECONDS", "0")  # the baseline is quick...
    real_execute = loop.execute

    def slow_experiment(job):
        os.environ["FAKE_TRAIN_SECONDS"] = "30" if job["n"] == 2 else "0"  # ...#2 is not
        return real_execute(job)

    loop.execute = slow_experiment
    start = time.monotonic()
    assert loop.run().startswith("aborted: run #2 was killed")
    assert time.monotonic() - start < 20
    assert [row.kind for row in rows(repo)] == ["baseline"]
    assert load_state(repo, TAG).inflight["phase"] == "running"


def test_hours_limit(repo):
    reason, _, _ = run_loop(repo, [], hours=1e-9)
    assert reason == "reached --hours 1e-09" and rows(repo) == []


def test_kept_runs_are_sampled_and_a_failure_is_not_fatal(repo, tmp_path, monkeypatch):
    # a stand-in for autoresearch.artifacts.sample (the real one needs real weights): writes
    # the sample for the first kept run it is called for, fails for the next one
    (tmp_path / "fake_sample.py").write_text(
        "import pathlib, sys\n"
        "run_dir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[3])\n"
        "if run_dir.name.startswith('0002'):\n"
        "    out.write_text('once upon a time')\n"
        "else:\n"
        "    sys.exit('error: no tokenizer')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr("autoresearch.artifacts.aftercare.SAMPLE_MODULE", "fake_sample")
    steps = [edit("keep me", VAL_BPB=0.9), edit("keep me too", VAL_BPB=0.8)]
    run_loop(repo, steps, sample=True)
    r = rows(repo)
    assert (repo / r[1].run_dir / "sample_output.txt").read_text() == "once upon a time"
    events = (repo / ".autoresearch" / TAG / "events.log").read_text()
    assert f"sampling {r[2].run_dir[5:]} failed (not fatal): error: no tokenizer" in events
    assert [row.status for row in r] == ["keep", "keep", "keep"]


# ---- states the loop refuses to start from


def test_dirty_train_py_is_refused(repo):
    (repo / "train.py").write_text("# uncommitted\n")
    with pytest.raises(UserError, match=r"train.py has uncommitted changes.*git checkout train"):
        run_loop(repo, [])


def test_detached_head_is_refused(repo):
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(UserError, match="HEAD is detached"):
        run_loop(repo, [])


def test_not_a_repo_is_refused(tmp_path):
    with pytest.raises(UserError, match="not a git repository"):
        run_loop(tmp_path, [])


def test_foreign_branch_is_refused(repo):
    git(repo, "branch", f"autoresearch/{TAG}")
    with pytest.raises(UserError, match="exists but has no loop state"):
        run_loop(repo, [])


def test_deleted_branch_and_moved_branch_are_refused(repo):
    run_loop(repo, [], max_experiments=0)
    git(repo, "commit", "-q", "--allow-empty", "-m", "a human commit on the loop's branch")
    with pytest.raises(UserError, match="moved outside the loop.*git update-ref"):
        run_loop(repo, [])
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-D", f"autoresearch/{TAG}")
    with pytest.raises(UserError, match="branch autoresearch/t does not"):
        run_loop(repo, [])


def test_changed_harness_is_refused(repo):
    run_loop(repo, [], max_experiments=0)
    (repo / "prepare.py").write_text("# new metric\n")
    with pytest.raises(UserError, match="prepare.py changed since tag t started"):
        run_loop(repo, [])


def test_another_tools_results_tsv_is_refused(repo):
    (repo / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                                      "baseline\t0.997900\t44.0\tkeep\tbaseline\n")
    with pytest.raises(UserError, match="written by another tool.*mv results.tsv"):
        run_loop(repo, [])


def test_harness_is_checked_before_every_run(repo):
    (repo / "train.py").write_text((repo / "train.py").read_text().replace('"ok"', '"tamper"'))
    git(repo, "commit", "-q", "-am", "a train.py that edits prepare.py when run")
    with pytest.raises(UserError, match="prepare.py changed since tag t started"):
        run_loop(repo, [], noise_runs=1)
    assert [r.kind for r in rows(repo)] == ["baseline"]  # the noise run never started

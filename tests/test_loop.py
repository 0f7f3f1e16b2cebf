"""The loop on one worker, in process, against the fake trainer.

Covers the bookkeeping of keep / discard / crash in git (the branch, side refs) and results.tsv,
the noise threshold and the paired confirmation of every keep, fix attempts, rejected proposals,
stop conditions, and the clear errors for states the loop cannot start from.
"""

import json
import os
import signal
import time

import pytest
from loop_helpers import (
    CPU,
    RecordingUI,
    ScriptedAgent,
    check_git_matches_results,
    edit,
    git,
    make_repo,
    run_loop,
    runs_alive,
    tag_rows,
)

from autoresearch.agents import AgentRefused, Proposal, Usage
from autoresearch.config import Options
from autoresearch.errors import UserError
from autoresearch.ledger.results import COLUMNS
from autoresearch.ledger.state import load_state, request_stop
from autoresearch.pipeline import MAX_REJECTIONS
from autoresearch.policy import Rule, Run, fit, min_detectable_gain
from autoresearch.scheduler import Loop
from autoresearch.stops import SAME_SIGINT_S

TAG = "t"


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def summary(repo):
    return [(r.experiment, r.kind, r.status, round(r.val_bpb, 6)) for r in tag_rows(repo)]


def head(repo):
    return git(repo, "rev-parse", f"autoresearch/{TAG}")


@pytest.mark.slow
def test_keep_discard_crash_bookkeeping(repo):
    base = git(repo, "rev-parse", "HEAD")
    (repo / "notes.txt").write_text("untracked notes\n")
    (repo / "program.md").write_text("# program\nHuman steering, not committed.\n")
    steps = [edit("lower val", VAL_BPB=0.9), edit("worse val", VAL_BPB=0.95),
             edit("blow the memory", MODE="oom")]
    reason, agent, ui = run_loop(repo, steps)
    assert reason == "reached --max-experiments 3"

    # no spread is known from one baseline run: the candidate (#2) runs again (#3), and the
    # two runs decide against the parent's value
    assert summary(repo) == [
        (1, "baseline", "keep", 1.0), (2, "experiment", "keep", 0.9),
        (3, "confirm", "keep", 0.9), (4, "experiment", "discard", 0.95),
        (5, "experiment", "crash", 0.0)]
    r = {row.experiment: row for row in tag_rows(repo)}
    assert r[1].commit == base[:7] and r[1].description == "baseline"
    assert r[5].reason == "oom" and r[5].memory_gb == 0.0 and r[2].memory_gb == 2.0
    assert r[2].profile == "cpu" and r[2].num_steps == 3 and r[2].agent == "scripted"
    assert r[2].cost_usd == 0.01 and r[2].run_dir == f"runs/{TAG}/0002-{r[2].commit}"
    assert r[2].parent == base[:7] and r[4].parent == r[2].commit  # judged against its parent
    assert r[2].worker == 0 and r[2].device == "cpu" and r[2].node
    assert "confirmed: +0.100000 over 2 runs" in r[2].reason and r[2].pairs == 2
    assert r[4].reason == \
        f"+0.050000 vs parent {r[2].commit} on worker 0 (0.900000 +- 0.000000)"
    lines = (repo / "results.tsv").read_text().splitlines()
    assert lines[0].split("\t") == COLUMNS
    assert lines[5].split("\t")[:4] == [r[5].commit, "0.000000", "0.0", "crash"]

    # git: the branch is the kept line; the others are kept on side refs
    assert head(repo).startswith(r[2].commit)
    assert git(repo, "rev-parse", f"{r[2].commit}^") == base
    assert git(repo, "log", "-1", "--format=%s", r[2].commit) == "lower val"
    check_git_matches_results(repo, TAG)
    # the user's checkout was never touched: branch, files, uncommitted edits
    assert git(repo, "rev-parse", "HEAD") == base
    assert (repo / "notes.txt").read_text() == "untracked notes\n"
    assert "Human steering" in (repo / "program.md").read_text()
    assert "VAL_BPB = 1.0" in (repo / "train.py").read_text()

    # run folders: the code that ran, its log and metrics; weights only for kept runs
    run2, run4 = repo / r[2].run_dir, repo / r[4].run_dir
    assert "val_bpb:          0.900000" in (run2 / "run.log").read_text()
    assert "VAL_BPB = 0.9" in (run2 / "train.py").read_text()
    assert (run2 / "prepare.py").read_text() == "# the fixed harness\n"
    metrics = json.loads((run2 / "metrics.json").read_text())
    assert metrics["summary"]["val_bpb"] == 0.9 and metrics["worker"] == 0
    assert (run2 / "model.pt").exists() and not (run4 / "model.pt").exists()

    # what the agent was told: the best code and the history so far, in its own work tree
    first, third = agent.requests[0], agent.requests[2]
    assert first.best_val_bpb == 1.0 and first.noise_threshold == 0.0
    assert first.repo == repo / ".autoresearch" / TAG / "trees" / "0"
    assert "Human steering" in first.program
    assert "VAL_BPB = 0.9" in third.train_py and len(third.history) == 4
    assert [row.experiment for row in ui.rows] == [1, 2, 3, 4, 5]
    assert (repo / ".autoresearch" / TAG / "events.log").exists()
    live = json.loads((repo / ".autoresearch" / TAG / "live.json").read_text())
    assert live["phase"] == "idle" and live["best_val_bpb"] == 0.9


@pytest.mark.slow
def test_noise_model_and_paired_confirmation(repo, tmp_path, monkeypatch):
    offsets = tmp_path / "offsets"
    # runs 1-3 the baseline wave; 4-6 a clear gain (candidate, control, confirmation): one pair
    # decides; 7-9 a no-op that was lucky once (-0.01): its pair shows no gain
    offsets.write_text("0\n0.004\n-0.004\n0\n0\n0\n-0.01\n0\n0\n")
    monkeypatch.setenv("FAKE_OFFSETS_FILE", str(offsets))
    steps = [edit("real gain", VAL_BPB=0.95), edit("no-op, lucky", MATRIX_LR=0.05)]
    run_loop(repo, steps, noise_runs=2, controls=True)
    assert [(n, kind, status) for n, kind, status, _ in summary(repo)] == [
        (1, "baseline", "keep"), (2, "noise", "discard"), (3, "noise", "discard"),
        (5, "control", "discard"), (4, "experiment", "keep"), (6, "confirm", "keep"),
        (8, "control", "discard"), (7, "experiment", "discard"), (9, "confirm", "discard")]
    noise = load_state(repo, TAG).noise
    rows = tag_rows(repo)
    # refit at the last confirmation (#9), with every row written
    model = fit([Run(r.commit, "0", r.val_bpb) for r in rows])
    assert noise.std == pytest.approx(model.within_std) and noise.dof == model.dof == 6
    assert noise.threshold == pytest.approx(
        min_detectable_gain(model.within_std, Rule(controls=True), 6))
    assert noise.values == pytest.approx([1.0, 1.004, 0.996])
    assert noise.spread == pytest.approx(0.008) and noise.floor == 0.0
    assert noise.offsets == {"0": 0.0} and noise.max_pairs == 2  # pairs: 2 by default
    r = {row.experiment: row for row in rows}
    assert r[4].pairs == 1 and r[4].gain == pytest.approx(0.05) and r[4].gain_low > 0
    assert "not confirmed: +0.000000 over 1 pair" in r[7].reason and r[7].pairs == 1
    check_git_matches_results(repo, TAG)


def test_noise_floor_when_runs_agree(repo):
    run_loop(repo, [], noise_runs=2, noise_floor=0.002, max_experiments=0)
    noise = load_state(repo, TAG).noise
    assert noise.threshold == 0.002 and noise.std == 0.0


@pytest.mark.slow
def test_crash_gets_fix_attempts(repo):
    base = git(repo, "rev-parse", "HEAD")
    steps = [edit("buggy idea", MODE="crash"), edit("fixed the bug", MODE="ok", VAL_BPB=0.9)]
    run_loop(repo, steps, max_experiments=2)
    assert [(n, kind, status) for n, kind, status, _ in summary(repo)] == [
        (1, "baseline", "keep"), (2, "experiment", "crash"), (3, "fix", "keep"),
        (4, "confirm", "keep")]
    r = {row.experiment: row for row in tag_rows(repo)}
    assert r[2].reason == "other"
    assert git(repo, "rev-parse", f"{r[3].commit}^") == base  # the fix sits on the best commit
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_fix_attempts_are_bounded(repo):
    steps = [edit("buggy idea", MODE="crash"), edit("fix 1", VAL_BPB=0.8),
             edit("fix 2", VAL_BPB=0.7), edit("new idea", VAL_BPB=1.05)]
    reason, agent, _ = run_loop(repo, steps, max_fix_attempts=2)
    assert [(kind, status) for _, kind, status, _ in summary(repo)] == [
        ("baseline", "keep"), ("experiment", "crash"), ("fix", "crash"), ("fix", "crash"),
        ("experiment", "discard")]
    fix_request = agent.requests[1]
    assert "boom: a bug in the edit" in fix_request.crash_log
    assert "MODE = 'crash'" in fix_request.train_py  # the agent fixes the crashed code
    assert agent.requests[3].crash_log is None
    assert "MODE = 'crash'" not in agent.requests[3].train_py
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_crash_classes_and_no_orphans(repo, tmp_path, monkeypatch):
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    steps = [edit("import", MODE="import"), edit("nan", MODE="nan"),
             edit("stray", MODE="stray"), edit("nan value", MODE="nanvalue"),
             edit("hang", MODE="hang"), edit("orphan", MODE="orphan", VAL_BPB=1.5)]
    run_loop(repo, steps, max_fix_attempts=0, timeout=3)
    assert [(status, row.reason) for (_, _, status, _), row in
            zip(summary(repo), tag_rows(repo), strict=True)][1:] == [
        ("crash", "import"), ("crash", "nan"), ("crash", "other"), ("crash", "nan"),
        ("crash", "timeout"), ("discard", "+0.500000 vs parent " + tag_rows(repo)[0].commit
                               + " on worker 0 (1.000000)")]
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) >= 9 and runs_alive(pid_file) == []


@pytest.mark.slow
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

    steps = [no_edit, touch_harness, syntax_error, refuse, edit("good", VAL_BPB=1.1)]
    run_loop(repo, steps, max_experiments=1)
    assert [(n, kind) for n, kind, _, _ in summary(repo)] == [(1, "baseline"), (2, "experiment")]
    events = (repo / ".autoresearch" / TAG / "events.log").read_text()
    assert events.count("proposal rejected") == 4
    assert "train.py is unchanged from the best commit" in events
    assert "changed files other than train.py: prepare.py" in events
    assert "does not compile" in events and "no idea" in events
    (copy,) = (repo / ".autoresearch" / TAG / "undone").glob("w0-*/prepare.py")
    assert copy.read_text() == "# easier metric\n"  # what the agent wrote is kept as a copy
    state = load_state(repo, TAG)
    assert state.rejected_total == 4 and state.rejections == 0
    assert state.cost_usd == pytest.approx(0.5 + 0.01 + 0.25 + 0.01)
    assert state.cost_unknown  # the syntax-error proposal reported no cost
    tree = repo / ".autoresearch" / TAG / "trees" / "0"
    assert (tree / "prepare.py").read_text() == "# the fixed harness\n"


@pytest.mark.slow
def test_endless_rejections_stop_the_loop(repo):
    steps = [lambda request: Proposal("nothing", Usage(cost_usd=0.0))] * MAX_REJECTIONS
    with pytest.raises(UserError, match="proposals in a row were unusable"):
        run_loop(repo, steps, max_experiments=5)
    state = load_state(repo, TAG)
    assert not state.jobs and not state.proposing
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.slow
def test_max_cost_and_stop_flag(repo):
    def edit_then_stop(request):
        proposal = edit("then stop", VAL_BPB=1.1)(request)
        request_stop(repo, TAG, now=False)
        return proposal

    reason, _, _ = run_loop(repo, [edit_then_stop, edit("never asked")], max_experiments=None)
    assert reason == "stop requested"
    assert [kind for _, kind, _, _ in summary(repo)] == ["baseline"]  # queued, not started
    assert not (repo / ".autoresearch" / TAG / "stop").exists()

    def pricey(request):
        edit("pricey", VAL_BPB=1.2)(request)
        return Proposal("pricey", Usage(cost_usd=5.0))

    reason, _, _ = run_loop(repo, [pricey, edit("never asked")], max_cost=1.0,
                            max_experiments=None)
    assert reason.startswith("reached --max-cost $1")
    assert [kind for _, kind, _, _ in summary(repo)] == ["baseline", "experiment", "experiment"]


def test_stop_now_drops_the_run_and_the_next_run_repeats_it(repo, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_SECONDS", "0")
    class StopNow(RecordingUI):
        def update(self, live):
            super().update(live)
            if live.get("experiment") == 2 and live.get("phase") == "training":
                request_stop(repo, TAG, now=True)

    def slow_idea(request):
        os.environ["FAKE_TRAIN_SECONDS"] = "5"  # long enough for the loop to see the flag
        return edit("interrupted idea", VAL_BPB=1.1)(request)

    opts = Options(tag=TAG, noise_runs=0, timeout=60, grace=0.5, sample=False, prefetch=False)
    loop = Loop(repo, opts, ScriptedAgent([slow_idea]), StopNow(), slots=CPU)
    assert loop.run().startswith("aborted")
    assert [kind for _, kind, _, _ in summary(repo)] == ["baseline"]
    (job,) = load_state(repo, TAG).jobs
    assert job.phase.value == "running" and job.n == 2
    os.environ["FAKE_TRAIN_SECONDS"] = "0"
    run_loop(repo, [], max_experiments=1)  # resumes: runs #2, asks the agent for nothing
    r = tag_rows(repo)
    assert [(row.experiment, row.status) for row in r] == [(1, "keep"), (2, "discard")]
    assert r[1].commit == job.commit[:7] and r[1].description == "interrupted idea"
    check_git_matches_results(repo, TAG)


@pytest.mark.slow
def test_ctrl_c_once_finishes_the_runs_under_way(repo, monkeypatch):
    class CtrlC(RecordingUI):
        sent = False

        def update(self, live):
            super().update(live)
            if live.get("experiment") == 2 and live.get("phase") == "training" and not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)

    def slow_idea(request):
        os.environ["FAKE_TRAIN_SECONDS"] = "3"  # the signal arrives while it trains
        return edit("finish me", VAL_BPB=1.1)(request)

    monkeypatch.setenv("FAKE_TRAIN_SECONDS", "0")
    opts = Options(tag=TAG, noise_runs=0, timeout=60, grace=0.5, sample=False, prefetch=False)
    loop = Loop(repo, opts, ScriptedAgent([slow_idea]), CtrlC(), slots=CPU)
    assert loop.run() == "stop requested (Ctrl-C)"
    assert [row.status for row in tag_rows(repo)] == ["keep", "discard"]


@pytest.mark.slow
def test_ctrl_c_twice_during_training_kills_the_run_and_records_nothing(repo, monkeypatch):
    class CtrlC(RecordingUI):
        def update(self, live):
            super().update(live)
            if live.get("experiment") == 2 and live.get("step") == 0 and not loop.stopping:
                os.kill(os.getpid(), signal.SIGINT)
                while not loop.stopping:  # the main thread handles one signal at a time
                    time.sleep(0.01)
                time.sleep(SAME_SIGINT_S + 0.1)  # a second press, not the first one forwarded
                os.kill(os.getpid(), signal.SIGINT)

    def slow_idea(request):
        proposal = edit("slow idea", VAL_BPB=0.9)(request)
        os.environ["FAKE_TRAIN_SECONDS"] = "600"  # the baseline was quick; this one is not
        return proposal

    monkeypatch.setenv("FAKE_TRAIN_SECONDS", "0")
    opts = Options(tag=TAG, noise_runs=0, timeout=60, grace=0.5, sample=False, prefetch=False)
    loop = Loop(repo, opts, ScriptedAgent([slow_idea]), CtrlC(), slots=CPU)
    # no bound on how fast: had Ctrl-C not killed it, the 60 s run timeout would (a crash row)
    assert loop.run().startswith("aborted")
    assert [row.kind for row in tag_rows(repo)] == ["baseline"]
    assert load_state(repo, TAG).jobs[0].phase.value == "running"


def test_hours_limit(repo):
    reason, _, _ = run_loop(repo, [], hours=1e-9)
    assert reason == "reached --hours 1e-09" and tag_rows(repo) == []


@pytest.mark.slow
def test_kept_runs_are_sampled_and_a_failure_is_not_fatal(repo, tmp_path, monkeypatch):
    # a stand-in for autoresearch.artifacts.sample (the real one needs real weights): writes
    # the sample for the kept experiment (#2, not its confirmation run #3), fails for the baseline
    (tmp_path / "fake_sample.py").write_text(
        "import pathlib, sys\n"
        "run_dir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[3])\n"
        "if run_dir.name.startswith('0002'):\n"
        "    out.write_text('once upon a time')\n"
        "else:\n"
        "    sys.exit('error: no tokenizer')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr("autoresearch.artifacts.aftercare.SAMPLE_MODULE", "fake_sample")
    run_loop(repo, [edit("keep me", VAL_BPB=0.9)], sample=True)
    r = {row.experiment: row for row in tag_rows(repo)}
    assert (repo / r[2].run_dir / "sample_output.txt").read_text() == "once upon a time"
    assert not (repo / r[3].run_dir / "sample_output.txt").exists()
    events = (repo / ".autoresearch" / TAG / "events.log").read_text()
    assert f"sampling {r[1].run_dir.split('/')[-1]} failed (not fatal): error: no tokenizer" \
        in events
    assert [row.status for row in tag_rows(repo)] == ["keep", "keep", "keep"]


# ---- states the loop refuses to start from, and what it accepts


def test_dirty_train_py_is_refused(repo):
    (repo / "train.py").write_text("# uncommitted\n")
    with pytest.raises(UserError, match=r"train.py has uncommitted changes.*git checkout train"):
        run_loop(repo, [])


@pytest.mark.slow
def test_a_detached_head_is_fine_and_stays_detached(repo):
    git(repo, "checkout", "-q", "--detach")
    run_loop(repo, [edit("idea", VAL_BPB=1.1)])
    assert git(repo, "branch", "--show-current") == ""
    assert [kind for _, kind, _, _ in summary(repo)] == ["baseline", "experiment"]


def test_not_a_repo_is_refused(tmp_path):
    with pytest.raises(UserError, match="not a git repository"):
        run_loop(tmp_path, [])


def test_foreign_branch_is_refused(repo):
    git(repo, "branch", f"autoresearch/{TAG}")
    with pytest.raises(UserError, match="exists but has no loop state"):
        run_loop(repo, [])


@pytest.mark.slow
def test_deleted_branch_and_moved_branch_are_refused(repo):
    run_loop(repo, [edit("idea", VAL_BPB=1.1)])
    git(repo, "update-ref", f"refs/heads/autoresearch/{TAG}", "HEAD~0")
    git(repo, "commit", "-q", "--allow-empty", "-m", "a human commit")
    git(repo, "update-ref", f"refs/heads/autoresearch/{TAG}", "HEAD")
    with pytest.raises(UserError, match="moved outside the loop.*git update-ref"):
        run_loop(repo, [])
    git(repo, "branch", "-D", f"autoresearch/{TAG}")
    with pytest.raises(UserError, match="branch autoresearch/t does not"):
        run_loop(repo, [])


def test_another_tools_results_tsv_is_refused_and_ours_is_upgraded(repo):
    (repo / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                                      "baseline\t0.997900\t44.0\tkeep\tbaseline\n")
    with pytest.raises(UserError, match="written by another tool.*mv results.tsv"):
        run_loop(repo, [])
    old = COLUMNS[:COLUMNS.index("run_dir") + 1]  # the version before workers were recorded
    row = "\t".join(["abc1234", "1.100000", "2.0", "keep", "baseline", "1", "baseline", "old",
                     "2026-11-01T00:00:00+00:00"] + [""] * (len(old) - 9))  # every cell, as written
    (repo / "results.tsv").write_text("\t".join(old) + "\n" + row + "\n")
    run_loop(repo, [edit("idea", VAL_BPB=1.1)])
    lines = (repo / "results.tsv").read_text().splitlines()
    assert lines[0].split("\t") == COLUMNS and lines[1] == row
    assert [r.experiment for r in tag_rows(repo, "old")] == [1]
    assert tag_rows(repo)[1].worker == 0


def test_a_run_that_changes_the_harness_is_void(repo):
    steps = [edit("edits the harness while it runs", MODE="tamper", VAL_BPB=0.5)]
    run_loop(repo, steps)
    r = tag_rows(repo)
    assert [(row.kind, row.status, row.reason) for row in r] == [
        ("baseline", "keep", ""), ("experiment", "crash", "tamper")]
    assert "changed prepare.py, harness.py while it ran: void" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()
    check_git_matches_results(repo, TAG)


def test_an_agent_edit_of_the_harness_module_is_refused_and_undone(repo):
    def touch_harness(request):
        (request.repo / "harness.py").write_text("PEAK_BF16_FLOPS = []  # no MFU to compare\n")
        return edit("faster", VAL_BPB=0.5)(request)

    run_loop(repo, [touch_harness, edit("good", VAL_BPB=1.1)], max_experiments=1)
    assert [(n, kind) for n, kind, _, _ in summary(repo)] == [(1, "baseline"), (2, "experiment")]
    events = (repo / ".autoresearch" / TAG / "events.log").read_text()
    assert "changed files other than train.py: harness.py" in events
    (copy,) = (repo / ".autoresearch" / TAG / "undone").glob("w0-*/harness.py")
    assert copy.read_text().startswith("PEAK_BF16_FLOPS = []")  # kept as a copy, not run
    tree = repo / ".autoresearch" / TAG / "trees" / "0"
    assert (tree / "harness.py").read_text() == "# the fixed harness\n"

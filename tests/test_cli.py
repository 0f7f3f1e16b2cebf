"""agent_loop.py: run, status, results, diff, stop, --help and the one-line errors."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from loop_helpers import AGENT_LOOP, REPO_ROOT, edit, git, make_repo, run_cli, run_loop
from typer.testing import CliRunner

from autoresearch.config import Harness
from autoresearch.errors import UserError
from autoresearch.ledger.results import COLUMNS, append_result, read_results
from autoresearch.model import Row
from autoresearch.redact import register_secret
from autoresearch.workspace.git import Git

spec = importlib.util.spec_from_file_location("agent_loop", AGENT_LOOP)
agent_loop = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent_loop)

TAG = "t"
REPO = REPO_ROOT
runner = CliRunner()


def cli(*args):
    return runner.invoke(agent_loop.app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A repo after a short night: baseline, 2 noise runs, a keep, a discard, a crash."""
    repo = make_repo(tmp_path_factory.mktemp("cli") / "repo")
    steps = [edit("lower val", VAL_BPB=0.9), edit("worse val", VAL_BPB=0.95),
             edit("blow the memory", MODE="oom")]
    run_loop(repo, steps, tag=TAG, noise_runs=2)
    return repo


def test_help_teaches():
    out = cli("--help").output
    for command in ("run", "status", "results", "diff", "stop", "summary", "plot"):
        assert command in out
    assert "uv run agent_loop.py run --tag nov21 --agent claude" in out
    run_help = cli("run", "--help").output
    for option in ("--max-experiments", "--hours", "--max-cost", "--noise-runs",
                   "--noise-floor", "--max-pairs", "--controls", "--timeout", "--max-fix-attempts",
                   "--keep-checkpoints",
                   "--base-url", "--api-key-env", "--train-cmd", "Examples:"):
        assert option in run_help



def test_a_command_loads_no_module_that_only_another_one_needs():
    # each call of the CLI pays for what it imports: the dashboard's web server, pygments (the
    # diff view's colours) and torch (sample) load only for the commands that use them
    proc = subprocess.run([sys.executable, "-X", "importtime", str(AGENT_LOOP), "--help"],
                          capture_output=True, text=True, check=True)
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "autoresearch.review.review_cli" in loaded  # the listing is read right
    assert not loaded & {"autoresearch.review.dashboard", "http.server", "rich.syntax", "torch"}

def test_status(done):
    result = cli("status", "--repo", done)
    assert result.exit_code == 0
    out = result.output
    assert "tag t" in out and "not running" in out
    # the best: the baseline wave's value minus #4's paired gain (the same number everywhere)
    assert ("best: 0.900000 (baseline - 1 kept gain) #4 " in out
            and "lower val; baseline 1.000000, change -0.100000" in out)
    assert "noise: within-worker std 0.000000 (" in out and "worker offsets w0 +0.000000" in out
    assert "3 baseline runs, spread 0.000000; decisions: sequential test" in out
    assert "6 (2 keep 3 discard 1 crash | 1 baseline, 2 noise, 3 experiment)   " \
        "experiments: 3 (1 kept)" in out
    assert "agent cost: $0.03" in out


def status_while(done, live_json: dict) -> str:
    """`status` while live.json says `live_json` (the loop that wrote it: this process)."""
    live = done / ".autoresearch" / TAG / "live.json"
    saved = live.read_text()
    live.write_text(json.dumps({**json.loads(saved), **live_json, "pid": os.getpid()}))
    try:
        return cli("status", "--repo", done).output
    finally:
        live.write_text(saved)


def test_status_shows_the_running_experiment(done):
    run = dict(phase="training", experiment=7, kind="experiment", commit="abc1234",
               description="try this", step=42, progress_pct=14.0, remaining_s=258)
    worker = {"worker": 0, "gpu": "", "device": "cpu", **run}
    out = status_while(done, {**run, "workers": {"0": worker}, "queued": 0})
    assert "running (pid" in out
    assert "w0 cpu: #7 experiment abc1234 try this - training, step 42 (14.0%), 4m18s left\n" \
        in out
    assert "queued: 0 runs; 0 candidates confirming" in out


def test_status_shows_each_worker(done):
    """Two GPUs: w0 trains while its agent prepares the next proposal, w1's GPU waits for its
    agent's fix; the queue; the loop counts as running although the latest update was w1's idle."""
    w0 = dict(worker=0, gpu="0", device="NVIDIA H200", phase="training", experiment=7,
              kind="experiment", commit="abc1234", description="try this", step=42,
              progress_pct=14.0, remaining_s=258, agent_phase="proposing",
              agent_task="a new experiment")
    w1 = dict(worker=1, gpu="1", device="NVIDIA H200", phase="idle", experiment=6,
              kind="experiment", commit="def5678", description="crashed one", step=3,
              agent_phase="proposing", agent_task="fix #6: crashed one")
    out = status_while(done, {**w1, "workers": {"1": w1, "0": w0}, "queued": 2,
                              "confirming": 1, "time_left_s": 3720})
    assert "running (pid" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("w0 "))
    assert lines[start:start + 3] == [
        "w0 gpu 0 NVIDIA H200: #7 experiment abc1234 try this - training, step 42 (14.0%), "
        "4m18s left; agent: proposing a new experiment",
        "w1 gpu 1 NVIDIA H200: idle; agent: proposing fix #6: crashed one",
        "queued: 2 runs; 1 candidate confirming; session time left 1h02m"]


def test_results_table(done):
    out = cli("results", "--repo", done).output
    assert "lower val" in out and "blow the memory" in out and "[oom]" in out
    top = cli("results", "--repo", done, "--top", "1").output
    assert "lower val" in top and "worse val" not in top and "baseline" not in top
    kept = cli("results", "--repo", done, "--kept-only").output
    assert "lower val" in kept and "worse val" not in kept and "baseline" not in kept


def test_results_of_another_tools_file(tmp_path):
    other = tmp_path / "results_mar8.tsv"
    other.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                     "baseline\t0.997900\t44.0\tkeep\tbaseline\n"
                     "bea057b\t0.986041\t43.9\tkeep\thalve batch\n"
                     "187e419\t0.000000\t0.0\tcrash\tdouble width\n")
    out = cli("results", "--results", other, "--top", "1").output
    assert "bea057b" in out and "halve batch" in out and "baseline" not in out
    assert "│ 2 │" in out  # rows without experiment numbers are numbered by position


def test_results_table_says_which_worker_ran_each_row(tmp_path):
    path = tmp_path / "results.tsv"
    for n, worker, gpu, node in ((1, 0, "0", "a"), (2, 1, "1", "a"), (3, 0, "", "b"),
                                 (4, 0, "", "b")):
        append_result(path, Row(f"{n:07x}", 1.0 - n / 100, 40.0, "keep", f"change {n}",
                                experiment=n, tag="x" if n < 4 else "y", worker=worker, gpu=gpu,
                                node=node))

    def table(*args) -> list[list[str]]:
        out = runner.invoke(agent_loop.app, ["results", "--results", str(path), *args],
                            env={"COLUMNS": "200"}).output
        return [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines()
                if line.startswith("│")]

    # worker is the 7th column; the node only when the rows shown come from more than one
    assert [row[6] for row in table("--tag", "x")] == ["w0 gpu0 @a", "w1 gpu1 @a", "w0 @b"]
    # one worker, or another tool's rows (no worker column): no column that says nothing
    assert table() == [["4", "0000004", "0.960000", "40.0", "keep", "experiment", "change 4"]]
    with open(path, "a") as f:  # rows without a worker among ours: their cell stays blank
        f.write("bea057b\t0.986041\t43.9\tkeep\thalve batch\t5\texperiment\tx"
                + "\t" * (len(COLUMNS) - 8) + "\n")
    assert [row[6] for row in table("--tag", "x")] == ["w0 gpu0 @a", "w1 gpu1 @a", "w0 @b", ""]


def test_diff_of_kept_and_tried_experiments(done):
    rows = read_results(done / "results.tsv")
    kept = cli("diff", "4", "--repo", done)  # by experiment number
    assert kept.exit_code == 0
    assert "-VAL_BPB = 1.0" in kept.output and "+VAL_BPB = 0.9" in kept.output
    worse = next(r for r in rows if r.description == "worse val")
    tried = cli("diff", worse.commit, "--repo", done)  # a discarded one, by commit
    assert "+VAL_BPB = 0.95" in tried.output and "lower val" not in tried.output
    oom = next(r for r in rows if r.description == "blow the memory")
    crashed = cli("diff", str(oom.experiment), "--repo", done)
    assert "+MODE = 'oom'" in crashed.output


def test_one_line_errors(done, tmp_path):
    result = runner.invoke(agent_loop.app, ["diff", "nope", "--repo", str(done)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: 'nope' is neither a commit nor an experiment number in results.tsv"]
    result = runner.invoke(agent_loop.app, ["status", "--repo", str(tmp_path)])
    assert result.exit_code == 1 and "no loop has run in" in result.output
    result = runner.invoke(agent_loop.app, ["run", "--tag", "x", "--agent", "nope"])
    assert result.exit_code == 1 and "unknown agent 'nope'" in result.output


def test_stop_writes_the_flag(done):
    flag = done / ".autoresearch" / TAG / "stop"
    out = cli("stop", "--repo", done).output
    assert flag.read_text().strip() == "graceful" and "no loop of tag t" in out
    cli("stop", "--now", "--repo", done)
    assert flag.read_text().strip() == "now"
    flag.unlink()


@pytest.mark.slow
def test_run_from_the_command_line(tmp_path):
    """The real CLI in a subprocess, plain output (not a TTY), sweep agent, custom train cmd."""
    repo = make_repo(tmp_path / "repo")
    (repo / "notes.txt").write_text("keep me\n")
    out = run_cli("run", "--tag", "demo", "--agent", "sweep", "--noise-runs", "1",
                  "--noise-floor", "1", "--max-experiments", "2", "--no-sample", "--repo",
                  str(repo), "--train-cmd", f"{sys.executable} train.py", timeout=120,
                  env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 0, out.stderr
    assert "note: PYTHONDONTWRITEBYTECODE is set" in out.stderr  # a slow start-up, said once
    assert "stopped: reached --max-experiments 2. To go on, run the same command with a " \
           "larger --max-experiments" in out.stdout  # not "resume with the same command"
    assert "#1 keep" in out.stdout and "min detectable gain" in out.stdout
    rows = read_results(repo / "results.tsv")
    assert [r.kind for r in rows] == ["baseline", "noise", "experiment", "experiment"]
    assert all(r.agent == "sweep" for r in rows[2:])
    assert git(repo, "branch", "--show-current") == "main"  # the user's checkout is theirs
    assert (repo / "notes.txt").read_text() == "keep me\n"
    # the same command again continues: the limit is per tag, so nothing more is run
    again = run_cli("run", "--tag", "demo", "--agent", "sweep", "--max-experiments", "2",
                    "--no-sample", "--repo", str(repo))
    assert again.returncode == 0 and len(read_results(repo / "results.tsv")) == 4


def test_a_crashed_baseline_says_what_its_log_says(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text((repo / "train.py").read_text().replace(
        'MODE = "ok"', 'MODE = "import"'))
    git(repo, "commit", "-qam", "a train.py that cannot import")
    out = run_cli("run", "--tag", "x", "--agent", "sweep", "--repo", str(repo))
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: the baseline crashed (import): ModuleNotFoundError: No "
                           "module named 'not_a_module_anywhere' (see runs/x/0001-")
    assert "data prepared?" not in line
    assert git(repo, "branch", "--show-current") == "main"  # nothing switched, nothing to undo


def test_a_shortened_budget_is_a_profile_of_its_own(monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_PROFILE", "h100")
    monkeypatch.setenv("AUTORESEARCH_TIME_BUDGET", "45")
    harness = Harness.read(REPO)
    assert (harness.profile, harness.time_budget, harness.timeout()) == ("h100@45s", 45.0, 210.0)
    monkeypatch.delenv("AUTORESEARCH_TIME_BUDGET")
    assert Harness.read(REPO).profile == "h100"


def test_settings_that_cannot_work_are_one_line(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "constants.py").write_text((REPO / "constants.py").read_text())
    git(repo, "commit", "-qam", "the real constants.py")
    out = run_cli("run", "--tag", "x", "--agent", "sweep", "--repo", str(repo),
                  env={**os.environ, "AUTORESEARCH_PROFILE": "gpu9"})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: unknown AUTORESEARCH_PROFILE='gpu9'; choose one of h100, consumer, cpu (unset "
        "it for the default, h100)"]  # not "error: error: ..."
    out = run_cli("run", "--tag", "x", "--agent", "sweep", "--repo", str(repo),
                  env={**os.environ, "AUTORESEARCH_TIME_BUDGET": "soon"})
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "error: AUTORESEARCH_TIME_BUDGET='soon' is not a number of seconds above zero; unset it "
        "for the profile's budget"]
    for flag, value in (("--timeout", "0"), ("--hours", "-1"), ("--max-experiments", "-1"),
                        ("--agent-timeout", "0")):
        out = run_cli("run", "--tag", "x", "--agent", "sweep", "--repo", str(repo), flag, value)
        assert out.returncode == 2 and f"Invalid value for '{flag}'" in out.stderr, flag
    lock = repo / ".git" / "index.lock"  # left by a git that crashed
    lock.write_text("")
    (repo / "train.py").write_text("# edited\n")
    with pytest.raises(UserError) as error:
        Git(repo).run("add", "train.py")
    assert str(error.value) == (
        f"{lock} exists: another git command is running in this repository, or one crashed. "
        f"If none is running, remove it (rm {lock}) and run again")


def test_run_errors_are_one_red_line(tmp_path):
    out = run_cli("run", "--tag", "x", "--agent", "sweep", "--repo", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"error: {tmp_path.resolve()} is not a git repository: run the loop from the "
        "autoresearch checkout (git clone ..., cd autoresearch)"]


def test_bad_run_arguments_are_one_line_and_touch_nothing(tmp_path):
    missing = tmp_path / "typo"
    out = run_cli("run", "--tag", "x", "--agent", "sweep", "--repo", str(missing))
    assert out.returncode == 1 and not missing.exists()  # no .autoresearch/ made at a typo
    assert out.stderr.strip().splitlines() == [
        f"error: {missing} is not a directory: pass the autoresearch checkout with --repo"]
    out = run_cli("status", "--repo", str(missing))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    repo = make_repo(tmp_path / "repo")
    out = run_cli("run", "--tag", "x", "--agent", "sweep", "--repo", str(repo),
                  "--train-cmd", '"unclosed')
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: --train-cmd '\"unclosed': No closing quotation"]
    out = run_cli("run", "--tag", "x", "--agent", "sweep", "--repo", str(repo),
                  "--keep-checkpoints", "-1")
    assert out.returncode == 2 and "--keep-checkpoints" in out.stderr
    for backend, error in ((("--gpus", "0;1"), "error: --gpus 0;1: give 'all' or GPU numbers "
                                               "separated by commas, e.g. 0,1"),
                           (("--ray", "auto", "--gpus", "all"),
                            "error: --ray places runs on the cluster's GPUs: leave --gpus and "
                            "--workers out")):
        out = run_cli("run", "--tag", "x", "--agent", "sweep", "-C", str(repo), *backend)
        assert out.returncode == 1 and out.stderr.strip().splitlines() == [error]
    assert not (repo / ".autoresearch").exists()


def test_max_cost_needs_a_known_price(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = ["run", "--tag", "x", "--agent", "openai", "--base-url", "http://127.0.0.1:9/v1",
             "--model", "my-local-model", "--repo", str(tmp_path)]
    result = runner.invoke(agent_loop.app, local + ["--max-cost", "5"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: --max-cost needs the dollar cost of every agent call, and "
        "openai:my-local-model has no known price: pass --price-in and --price-out (USD per "
        "million tokens), or drop --max-cost"]
    result = runner.invoke(agent_loop.app, local + ["--max-cost", "5", "--price-in", "0"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "error: --price-in and --price-out go together: pass both (USD per million input and "
        "output tokens) or neither"]
    priced = runner.invoke(agent_loop.app, local + ["--max-cost", "5", "--price-in", "0",
                                                    "--price-out", "0"])
    assert priced.exit_code == 1 and "--max-cost" not in priced.output  # past the check: no repo
    negative = runner.invoke(agent_loop.app, local + ["--price-in", "-1", "--price-out", "1"])
    assert negative.exit_code == 2 and "--price-in" in negative.output


def test_the_error_line_shows_no_secret():
    key = "zz-Kestrel-4411-orchard-Vapor"
    register_secret(key)
    app = agent_loop.App()

    @app.command()
    def fail() -> None:
        raise UserError(f"proxy answered 401: key {key} or Bearer {key[::-1]} is wrong")

    result = runner.invoke(app, [], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.strip() == ("error: proxy answered 401: key [redacted] or Bearer "
                                     "[redacted] is wrong")

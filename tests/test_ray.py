"""`--ray`: runs as Ray tasks on a real local Ray cluster that the test starts on loopback, with
two logical GPUs (this machine has none; Ray still sets CUDA_VISIBLE_DEVICES per task). The real
cpu-profile train.py through Ray tasks, a Ray worker killed mid-run, an unreachable cluster."""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, SESSION_CACHE, make_project
from loop_helpers import check_git_matches_results, git, make_repo, run_cli, tag_rows
from target_helpers import make_target_repo

from autoresearch.execution.procs import pid_alive, stat

# Ray is not imported into the test process itself (its native libraries beside torch's in one
# process are not what the loop does either): the loop and the cluster run in subprocesses.
if importlib.util.find_spec("ray") is None:
    pytest.skip("the ray extra is not installed: uv sync --extra ray", allow_module_level=True)
RAY = str(Path(sys.executable).with_name("ray"))
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}  # Ray >= 2.59 turns token auth on when a token exists
# one pytest process runs this file's tests (pyproject: --dist loadgroup): one cluster starts
pytestmark = pytest.mark.xdist_group("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(prepared_cache):
    """`ray start --head --block` with 2 logical GPUs, in a process group of its own that the
    teardown ends (`ray stop` would stop every cluster on the machine); its workers see this
    test's fake-trainer knobs. No token authentication: a throwaway cluster on loopback."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    pids = Path(temp) / "trainer-pids"
    port = free_port()
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", FAKE_PID_FILE=str(pids), **NO_AUTH)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=4", "--num-gpus=2",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", f"--temp-dir={temp}",
         "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    time.sleep(3)  # the raylet registers after the GCS answers
    try:
        yield f"127.0.0.1:{port}", pids
    finally:
        # SIGTERM lets each Ray process end itself; `ray start` then waits on stragglers for
        # about 30 s, so after a few seconds the group (head, raylet, GCS, workers) is killed
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def loop(repo, address, *args, timeout=600, **env):
    return run_cli("run", "--tag", "t", "--agent", "sweep", "--ray", address, "--no-sample",
                   "--plain", "--repo", str(repo), *args, timeout=timeout,
                   env=dict(os.environ, AUTORESEARCH_CACHE=str(SESSION_CACHE), **NO_AUTH, **env))


def test_an_unreachable_cluster_is_one_line_before_anything_starts(tmp_path):
    repo = make_repo(tmp_path / "repo")
    out = loop(repo, f"127.0.0.1:{free_port()}", timeout=60)  # no answer in 60 s fails it
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the Ray cluster at 127.0.0.1:")
    assert not (repo / "results.tsv").exists() and not (repo / ".autoresearch" / "t").exists()


@pytest.mark.slow
def test_a_killed_ray_worker_gets_its_run_run_again(cluster, tmp_path):
    address, pids = cluster
    repo = make_repo(tmp_path / "repo")
    text = (repo / "train.py").read_text().replace(
        'seconds = float(os.environ.get("FAKE_TRAIN_SECONDS", "0"))', "seconds = 12.0")
    (repo / "train.py").write_text(text)
    subprocess.run(["git", "commit", "-qam", "a slow trainer"], cwd=repo, check=True)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "agent_loop.py"), "run", "--tag", "t", "--agent", "sweep",
         "--ray", address, "--noise-runs", "0", "--noise-floor", "1", "--max-experiments", "1",
         "--no-sample",
         "--plain", "--repo", str(repo)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=dict(os.environ, AUTORESEARCH_CACHE=str(SESSION_CACHE), **NO_AUTH))
    deadline = time.monotonic() + 120
    while not (pids.exists() and pids.read_text().split()) and time.monotonic() < deadline:
        time.sleep(0.2)
    first = int(pids.read_text().split()[0])
    reaper = stat(first)[1]
    worker = stat(reaper)[1]  # the Ray worker process that runs the task
    os.kill(worker, signal.SIGKILL)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    deadline = time.monotonic() + 30
    while pid_alive(first) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(first)  # its run died with the worker (the reaper follows its parent)
    rows = tag_rows(repo)
    assert sorted(r.kind for r in rows if r.kind in ("baseline", "noise")) == ["baseline", "noise"]
    assert all(r.status != "crash" for r in rows)  # Ray ran it again elsewhere; nothing lost
    assert {r.gpu for r in rows} <= {"0", "1"} and all(r.node for r in rows)
    assert len(pids.read_text().split()) > len(rows)  # one run started twice
    check_git_matches_results(repo, "t")


@pytest.mark.slow
def test_the_real_train_py_through_ray_tasks(cluster, tmp_path):
    address, _ = cluster
    repo = make_project(tmp_path / "project")
    out = loop(repo, address, "--max-experiments", "1", "--noise-runs", "0",
               "--noise-floor", "1", AUTORESEARCH_PROFILE="cpu")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = tag_rows(repo)
    assert sorted(r.kind for r in rows) == ["baseline", "experiment", "noise"]  # 2 GPUs at once
    for row in rows:
        assert row.profile == "cpu" and row.val_bpb > 0 and row.gpu in ("0", "1")
        assert (repo / row.run_dir / "run.log").exists()  # the files came back from the node
    check_git_matches_results(repo, "t")


@pytest.mark.slow
@pytest.mark.parametrize("gpu, flags", [(False, ["--workers", "2"]), (True, [])])
def test_a_target_of_its_own_runs_as_ray_tasks(cluster, tmp_path, gpu, flags):
    """A target of its own: with gpu = false, `--ray ADDRESS --workers 2` runs its command as Ray
    tasks of one CPU each; with gpu = true, one task per GPU of the cluster, as train.py. Neither
    has prepared data for the node to match, and the loop reads and decides its metric (higher
    is better) as it does locally."""
    address, _ = cluster
    repo = make_target_repo(tmp_path / "toy")
    if gpu:
        table = (repo / "pyproject.toml").read_text()
        (repo / "pyproject.toml").write_text(table.replace("gpu = false", "gpu = true"))
        git(repo, "commit", "-qam", "a GPU target")
    out = run_cli("-C", ".", "run", "--tag", "t", "--agent", "sweep", "--ray", address, *flags,
                  "--max-experiments", "2", "--plain", cwd=repo, timeout=600,
                  env=dict(os.environ, **NO_AUTH))
    assert out.returncode == 0, out.stderr
    rows = tag_rows(repo)
    base = next(r for r in rows if r.kind == "baseline")  # two workers: a noise run may be #1
    assert base.status == "keep" and base.val_bpb == -0.5  # accuracy 0.5's loss, from the node
    assert {r.node for r in rows} == {socket.gethostname()}
    assert len([r for r in rows if r.kind == "experiment"]) == 2
    check_git_matches_results(repo)

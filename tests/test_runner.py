"""Running train.py: the log, progress, the timeout kill, and no orphaned processes."""

import os
import subprocess
import sys
import time

from loop_helpers import FAKE_TRAIN, set_constants

from autoresearch.execution.local import (
    CHECKPOINT_ENV,
    bytecode_warning,
    kill_stale_runs,
    run_training,
)
from autoresearch.execution.procs import escalate, kill_group, pid_alive


def fake_repo(tmp_path, **constants):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(set_constants(FAKE_TRAIN, **constants))
    return repo


def pids(path, at_least, timeout=10.0):
    """The pids the fake trainer's processes wrote, once `at_least` of them have."""
    deadline = time.monotonic() + timeout
    while True:
        found = [int(x) for x in path.read_text().split()] if path.exists() else []
        if len(found) >= at_least:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"only {found} in {path}")
        time.sleep(0.05)


def test_normal_run_logs_and_reports_progress(tmp_path):
    repo = fake_repo(tmp_path)
    run_dir = tmp_path / "runs" / "0001-abc1234"
    seen, started = [], []
    result = run_training([sys.executable, "train.py"], repo, run_dir, timeout=30,
                          on_start=started.append, on_progress=seen.append, poll=0.01)
    assert result.returncode == 0 and not result.timed_out and not result.aborted
    log = (run_dir / "run.log").read_text()
    assert "val_bpb:          1.000000" in log
    assert (run_dir / "model.pt").exists()  # AUTORESEARCH_CHECKPOINT_DIR was the run dir
    assert started and not pid_alive(started[0])
    assert seen and seen[-1].step == 2 and seen[-1].progress_pct == 100.0


def test_timeout_kills_child_and_grandchild(tmp_path, monkeypatch):
    repo = fake_repo(tmp_path, MODE="hang")
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    run_dir = tmp_path / "run"
    result = run_training([sys.executable, "train.py"], repo, run_dir, timeout=1.5, grace=0.5,
                          poll=0.05)
    # the fake hangs 600 s: a runner that waited for it would not report a timeout
    assert result.timed_out and result.returncode is None
    trainer, child, grandchild = pids(pid_file, 3, timeout=0)  # all three had started
    for pid in (trainer, child, grandchild):
        assert not pid_alive(pid), f"process {pid} survived the timeout"


def test_processes_left_after_a_normal_exit_are_killed(tmp_path, monkeypatch):
    repo = fake_repo(tmp_path, MODE="orphan")
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    # the orphan records its pid a moment after it starts: the leader waits 1 s before exiting
    result = run_training([sys.executable, "-c", "import runpy, time; runpy.run_path("
                           "'train.py', run_name='__main__'); time.sleep(1)"],
                          repo, tmp_path / "run", timeout=30, grace=0.5, poll=0.05)
    assert result.returncode == 0
    found = pids(pid_file, 2, timeout=0)
    assert not any(pid_alive(pid) for pid in found)


def test_abort_kills_the_run(tmp_path, monkeypatch):
    repo = fake_repo(tmp_path)
    monkeypatch.setenv("FAKE_TRAIN_SECONDS", "60")
    started = []
    calls = iter(range(1000))
    result = run_training([sys.executable, "train.py"], repo, tmp_path / "run", timeout=60,
                          on_start=started.append, should_abort=lambda: next(calls) > 5,
                          poll=0.05, grace=1)
    assert result.aborted and result.returncode is None
    assert not pid_alive(started[0])


def test_kill_stale_runs_finds_a_trainer_by_its_run_dir(tmp_path):
    run_dir = tmp_path / "runs" / "0003-abc1234"
    run_dir.mkdir(parents=True)
    env = dict(os.environ, **{CHECKPOINT_ENV: str(run_dir.resolve())})
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env,
                            start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             start_new_session=True)
    try:
        assert kill_stale_runs(tmp_path / "runs" / "0004-def5678") == []
        assert kill_stale_runs(run_dir) == [proc.pid]
        proc.wait(timeout=10)
        assert other.poll() is None  # an unrelated process is left alone
    finally:
        proc.kill()
        other.kill()
        proc.wait()
        other.wait()


def test_a_failing_callback_does_not_orphan_the_run(tmp_path, monkeypatch):
    repo = fake_repo(tmp_path)
    monkeypatch.setenv("FAKE_TRAIN_SECONDS", "60")
    started = []

    def broken(progress):
        raise RuntimeError("a bug in the loop's progress display")

    try:
        run_training([sys.executable, "train.py"], repo, tmp_path / "run", timeout=60,
                     on_start=started.append, on_progress=broken, poll=0.05, grace=1)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the callback's error was swallowed")
    assert not pid_alive(started[0])


def test_bytecode_warning_only_when_python_may_not_cache_bytecode():
    assert bytecode_warning({}) is None
    assert bytecode_warning({"PYTHONDONTWRITEBYTECODE": ""}) is None  # empty means unset
    assert "PYTHONDONTWRITEBYTECODE is set" in bytecode_warning({"PYTHONDONTWRITEBYTECODE": "1"})


ESCAPER = """
import os, subprocess, sys, time
# leave the run's session and process group, drop the run's marker from the environment, fork
# again: only a subreaper still knows this process belongs to the run
subprocess.Popen([sys.executable, "-c", GRANDCHILD, os.environ["FAKE_PID_FILE"]],
                 start_new_session=True, env={})
time.sleep(600)
"""
GRANDCHILD = """
import os, sys, time
if os.fork() == 0:
    open(sys.argv[1], "a").write(f"{os.getpid()}\\n")
    time.sleep(600)
"""


def test_a_process_that_leaves_the_session_does_not_outlive_the_run(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(f"GRANDCHILD = {GRANDCHILD!r}\n" + ESCAPER)
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    result = run_training([sys.executable, "train.py"], repo, tmp_path / "run", timeout=3,
                          grace=0.5, poll=0.05)
    assert result.timed_out
    (escaped,) = pids(pid_file, 1)
    deadline = time.monotonic() + 5
    while pid_alive(escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(escaped)


STUBBORN = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")
POLITE = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"


def test_kill_group_escalates_to_sigkill_only_for_what_ignores_sigterm():
    """One escalation for the loop and the reaper (procs.escalate): a group that obeys SIGTERM
    ends by it; one that ignores it is killed once the grace is over."""
    for code, signal_seen in ((POLITE, -15), (STUBBORN, -9)):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                 start_new_session=True, text=True)
        assert child.stdout.readline() == "ready\n"  # its handler is in place
        kill_group(child.pid, grace=0.5)
        assert child.wait(timeout=10) == signal_seen


def test_escalate_stops_at_the_first_signal_with_nothing_to_receive_it():
    sent = []
    escalate(lambda sig: sent.append(sig) or len(sent) < 2, lambda: False, grace=0.01, kills=5,
             kill_wait=0.01, poll=0.005)
    assert sent == [15, 9]  # SIGTERM, one SIGKILL round, then nothing was left

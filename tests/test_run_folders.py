"""Every reader of run folders finds the runs the loop makes (runs/<tag>/<n>-<commit7>/): the
loop's own pruning (--keep-checkpoints) and sampling after a keep, `agent_loop.py sample N`, and
the dashboard's log, metrics and sample views. The runs come from the real loop, its trainer a
tiny torch model that saves weights the way the real train.py does."""

import subprocess
import sys
import threading

import pytest
import requests
from loop_helpers import AGENT_LOOP, FAKE_TRAIN, edit, git, make_repo, run_loop, tag_rows
from test_sample import PREPARE, TRAIN_V1

from autoresearch.artifacts.checkpoints import RUNS_DIR, run_dir_for, run_dirs
from autoresearch.review.dashboard import Board, make_server

TAG = "t"
# the fake trainer's summary block, as train.py prints it, reporting VAL_BPB
SUMMARY = FAKE_TRAIN[FAKE_TRAIN.index('    print("profile: cpu")'):
                     FAKE_TRAIN.index('\n\n\nif __name__')].replace("{value:.6f}", "{VAL_BPB:.6f}")
# TRAIN_V1's model (wte = identity, head = successor: greedy counts upwards), trained instantly:
# weights and config.json into the run folder, the summary on stdout, VAL_BPB as reported.
TRAINER = TRAIN_V1.replace('''if __name__ == "__main__":
    raise SystemExit("sampling must never run training")''', '''VAL_BPB = 1.0


if __name__ == "__main__":
    import json
    import os

    out = os.environ["AUTORESEARCH_CHECKPOINT_DIR"]
    head = torch.zeros(257, 257)
    head[torch.arange(1, 256), torch.arange(0, 255)] = 10.0
    torch.save({"wte.weight": torch.eye(257), "head.weight": head}, os.path.join(out, "model.pt"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"model": {"sequence_len": 8, "vocab_size": 257}, "profile": "cpu"}, f)
''' + SUMMARY)
assert TRAINER != TRAIN_V1
# one pytest process runs this file's tests (pyproject: --dist loadgroup): one night is played
pytestmark = pytest.mark.xdist_group("run-folders")


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A baseline and two experiments, each better than the last (two keeps), sampled after each
    keep, the best 1 keeping its weights."""
    repo = make_repo(tmp_path_factory.mktemp("night") / "repo")
    (repo / "train.py").write_text(TRAINER)
    (repo / "prepare.py").write_text(PREPARE)
    git(repo, "commit", "-qam", "a trainer with weights")
    steps = [edit(f"lower to {v}", VAL_BPB=v) for v in (0.9, 0.8)]
    run_loop(repo, steps, tag=TAG, sample=True, keep_checkpoints=1)
    return repo


def agent_loop(repo, *args):
    """The CLI as a user types it in the checkout: `uv run agent_loop.py sample 4 -C .`."""
    return subprocess.run([sys.executable, str(AGENT_LOOP), *args], cwd=repo, text=True,
                          capture_output=True, timeout=120)


def kept_runs(repo):
    return [r for r in tag_rows(repo, TAG) if r.status == "keep" and r.kind == "experiment"]


@pytest.mark.slow
def test_the_loop_makes_run_folders_under_its_tag(night):
    rows = tag_rows(night, TAG)
    assert all(r.run_dir.startswith(f"{RUNS_DIR}/{TAG}/") for r in rows)
    assert sorted(run_dir_for(night, r) for r in rows) == run_dirs(night)
    assert len(kept_runs(night)) == 2


@pytest.mark.slow
def test_keep_checkpoints_prunes_all_but_the_best(night):
    weights = sorted((night / RUNS_DIR).glob("**/model.pt"))
    best = kept_runs(night)[-1]  # the newest keep: the kept line only improves
    assert weights == [run_dir_for(night, best) / "model.pt"]


@pytest.mark.slow
def test_every_keep_was_sampled_after_its_decision(night):
    rows = tag_rows(night, TAG)
    for kept in kept_runs(night):  # in the folder of one of its runs (itself or its confirmation)
        samples = [run_dir_for(night, r) / "sample_output.txt" for r in rows
                   if r.commit == kept.commit and r.status == "keep"]
        texts = [p.read_text() for p in samples if p.is_file()]
        assert texts and texts[0].startswith("The capital of France is")


@pytest.mark.slow
def test_sample_command_finds_a_run_by_number(night):
    best = min(kept_runs(night), key=lambda r: r.val_bpb)
    result = agent_loop(night, "sample", str(best.experiment), "-C", ".", "--prompt", "ab",
                        "--max-tokens", "3", "--temperature", "0", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "abcde"
    name = run_dir_for(night, best).name
    result = agent_loop(night, "sample", f"{TAG}/{name}", "-C", ".", "--max-tokens", "1",
                        "--device", "cpu")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def dashboard(night):
    srv = make_server(Board(night, night / "results.tsv"), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("view", ["log", "metrics", "sample"])
def test_dashboard_views_of_a_run(night, dashboard, view):
    sampled = [r for r in tag_rows(night, TAG) if r.kind != "baseline" and
               (run_dir_for(night, r) / "sample_output.txt").is_file()][-1]
    data = requests.get(f"{dashboard}/api/{view}/{sampled.experiment}", timeout=10).json()
    if view == "metrics":
        assert data["metrics"]["commit"].startswith(sampled.commit)
    elif view == "log":
        assert "val_bpb:          0.800000" in data["text"]
    else:
        assert data["text"].startswith("The capital of France is")

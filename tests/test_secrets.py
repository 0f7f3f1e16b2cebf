"""Keys never reach files: a training run gets no credentials (locally and on a Ray node), and an
agent's words with a key in them are redacted in every file and view the loop writes: results.tsv,
journal.jsonl, live.json, commit messages, `journal --full` and `diff`."""

import json
import subprocess
import sys

import pytest
from loop_helpers import AGENT_LOOP, FAKE_TRAIN, git, make_repo, run_loop, set_constants, tag_rows

from autoresearch.agents import Proposal, Usage
from autoresearch.artifacts.aftercare import sample
from autoresearch.artifacts.checkpoints import run_dir_for
from autoresearch.execution.executor import RunSpec
from autoresearch.execution.ray import run_task
from autoresearch.ledger.state import tag_dir
from autoresearch.memory.journal import JOURNAL
from autoresearch.redact import CREDENTIAL_ENVS, MARK, redact, run_env
from autoresearch.workspace.guard import data_fingerprint

TAG = "t"
# key shapes of the services a research box holds; none registered with the redactor
KEYS = {"github": "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2, "github_fine": "github_pat_" + "11ABC" * 8,
        "huggingface": "hf_" + "aBcDeFgHiJkLmNoPqRsTuV" * 2, "aws": "AKIAIOSFODNN7EXAMPLE",
        "openai": "sk-proj-" + "Mn3Bv5Cx7Zl9Kj2Hg4" * 2}
PLAIN = "correct-horse-battery-staple"  # a credential of no known shape
# a trainer that prints its environment, as a debugging train.py would
ENV_TRAIN = FAKE_TRAIN.replace("def main():\n", "def main():\n    print('ENV', dict(os.environ))\n")


@pytest.mark.parametrize("name", list(KEYS))
def test_key_shapes_are_redacted(name):
    assert redact(f"token {KEYS[name]} leaked") == f"token {MARK} leaked"


def test_run_env_withholds_every_credential():
    base = {"PATH": "/bin", "HOME": "/root", "TOKENIZERS_PARALLELISM": "false",
            "MY_SERVICE_TOKEN": "x", "DB_PASSWORD": "x", "VENDOR_API_KEY": "x",
            "CLIENT_SECRET": "x", **{name: "x" for name in CREDENTIAL_ENVS}}
    assert run_env(base) == {"PATH": "/bin", "HOME": "/root", "TOKENIZERS_PARALLELISM": "false"}


def credentials(monkeypatch) -> list[str]:
    """Agent keys and a credential-named variable in the loop's environment; their values."""
    values = {"OPENAI_API_KEY": KEYS["openai"], "ANTHROPIC_API_KEY": "sk-ant-" + "q" * 30,
              "HF_TOKEN": KEYS["huggingface"], "ACME_SECRET": "plain-secret-value-1234"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return list(values.values())


def test_a_local_run_gets_no_credentials(tmp_path, monkeypatch):
    secrets = credentials(monkeypatch)
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text(ENV_TRAIN)
    git(repo, "commit", "-qam", "a train.py that prints its environment")
    run_loop(repo, [], max_experiments=0)
    log = (run_dir_for(repo, tag_rows(repo)[0]) / "run.log").read_text()
    assert "'PATH'" in log  # the environment was printed...
    assert not [s for s in secrets if s in log]  # ...without a credential in it


def test_a_ray_task_gives_its_run_no_credentials(tmp_path, monkeypatch):
    """What a Ray node runs (run_task, as the Ray worker calls it), with the keys in the worker's
    environment, as a cluster that ray.init started from the loop's shell has them."""
    secrets = credentials(monkeypatch)
    cache = tmp_path / "cache"
    files = {"train.py": ENV_TRAIN, "prepare.py": "",
             "constants.py": f"TIME_BUDGET = 5\nCACHE_DIR = {str(cache)!r}\n"}
    spec = RunSpec(1, files, tmp_path / "unused", [sys.executable, "train.py"], 60, 1.0)
    outcome = run_task(spec, data_fingerprint(cache))
    log = outcome["files"]["run.log"].decode()
    assert outcome["returncode"] == 0 and "'PATH'" in log
    assert not [s for s in secrets if s in log]


def leaky(request):
    """An agent that quotes keys in its description and hypothesis."""
    path = request.repo / "train.py"
    path.write_text(set_constants(path.read_text(), VAL_BPB=0.9))
    return Proposal(f"use {KEYS['github']} and {KEYS['aws']} ({PLAIN})", Usage(cost_usd=0.01),
                    hypothesis=f"the hub key {KEYS['huggingface']} {KEYS['github_fine']} helps")


def cli(repo, *args) -> str:
    proc = subprocess.run([sys.executable, str(AGENT_LOOP), *args, "-C", "."], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_an_agents_words_are_redacted_in_every_file_and_view(tmp_path, monkeypatch):
    """Key shapes, and a credential of the loop's environment whatever its shape (an agent can
    read its environment), are cut out of everything the loop writes."""
    monkeypatch.setenv("ACME_SECRET", PLAIN)
    repo = make_repo(tmp_path / "repo")
    run_loop(repo, [leaky])
    n = next(r.experiment for r in tag_rows(repo) if r.kind == "experiment")
    written = {
        "results.tsv": (repo / "results.tsv").read_text(),
        "journal.jsonl": (tag_dir(repo, TAG) / JOURNAL).read_text(),
        "live.json": (tag_dir(repo, TAG) / "live.json").read_text(),
        "events.log": (tag_dir(repo, TAG) / "events.log").read_text(),
        "commit messages": git(repo, "log", "--format=%B", "--all"),
        "journal --full": cli(repo, "journal", "--full"),
        "diff": cli(repo, "diff", str(n)),
    }
    assert "use [redacted] and [redacted] ([redacted])" in written["results.tsv"]
    assert any(e["description"] == f"use {MARK} and {MARK} ({MARK})" for e in map(
        json.loads, written["journal.jsonl"].splitlines()))
    assert "Hypothesis: the hub key [redacted] [redacted] helps" in written["commit messages"]
    for where, text in written.items():
        assert not [k for k in [*KEYS.values(), PLAIN] if k in text], where
        assert "use [redacted]" in text, where
    # what an older version wrote unredacted is redacted when shown
    entry = json.loads(written["journal.jsonl"].splitlines()[-1])
    entry.update(n=99, description=f"old {KEYS['github']}")
    with open(tag_dir(repo, TAG) / JOURNAL, "a") as f:
        f.write(json.dumps(entry) + "\n")
    git(repo, "commit", "-q", "--allow-empty", "-m", f"old {KEYS['huggingface']}")
    shown = cli(repo, "journal", "--full") + cli(repo, "diff", git(repo, "rev-parse", "HEAD"))
    assert "old [redacted]" in shown and not [k for k in KEYS.values() if k in shown]


def test_the_sampler_gives_a_runs_code_no_credentials(tmp_path, monkeypatch):
    """After a keep the loop imports the run's train.py to sample it: module-level code of that
    train.py runs then, and gets no credentials either."""
    secrets = credentials(monkeypatch)
    run_dir = tmp_path / "runs" / TAG / "0002-abcdef0"
    run_dir.mkdir(parents=True)
    seen = tmp_path / "env-at-import"
    (run_dir / "train.py").write_text(f"import os\nopen({str(seen)!r}, 'w').write("
                                      f"repr(dict(os.environ)))\n")
    (run_dir / "model.pt").write_bytes(b"w")
    (run_dir / "config.json").write_text('{"model": {}}')
    assert sample(tmp_path, run_dir, 60) is not None  # no GPT in it: sampling fails, not fatal
    text = seen.read_text()
    assert "'PATH'" in text and not [s for s in secrets if s in text]

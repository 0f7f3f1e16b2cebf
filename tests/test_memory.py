"""The night's memory in the loop: the journal (written for every run, rebuilt when lost), no run
for a program that already ran, the plateau note, and what an LLM agent's prompt holds after a
long night."""

import json
import random
from pathlib import Path

import pytest
from loop_helpers import edit, make_repo, run_cli, run_loop, set_constants, tag_rows

from autoresearch.agents import AgentRequest, Proposal, Usage
from autoresearch.agents.prompt import build_context
from autoresearch.ledger.state import load_state
from autoresearch.memory.digest import build_digest
from autoresearch.memory.journal import JOURNAL, Entry, load

TAG = "t"
PROGRAM = (Path(__file__).resolve().parent.parent / "program.md").read_text()


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def journal_of(repo):
    return load(repo / ".autoresearch" / TAG / JOURNAL)


def rewrite(description, transform):
    def step(request):
        path = request.repo / "train.py"
        path.write_text(transform(path.read_text()))
        return Proposal(description, Usage(cost_usd=0.0))
    return step


@pytest.mark.slow
def test_the_journal_has_every_run_and_survives_its_loss(repo):
    def lower(request):
        proposal = edit("lower", VAL_BPB=0.9)(request)
        proposal.hypothesis = "a smaller number is a better number"
        return proposal

    steps = [lower, edit("a bonus", BONUS=-0.05),
             edit("undo lower", VAL_BPB=1.0), edit("faster matrices", MATRIX_LR=0.05)]
    run_loop(repo, steps)
    entries = journal_of(repo)
    assert [e.n for e in entries] == sorted(r.experiment for r in tag_rows(repo))
    kept = next(e for e in entries if e.description == "lower")
    assert kept.status == "keep" and kept.delta == pytest.approx(-0.1)
    assert kept.changes == ["VAL_BPB 1.0 -> 0.9"] and kept.constants["VAL_BPB"] == 0.9
    assert kept.hypothesis == "a smaller number is a better number"  # kept in the commit too
    confirm = next(e for e in entries if e.kind == "confirm")
    assert confirm.links == {"confirms": kept.n}
    undo = next(e for e in entries if e.description == "undo lower")
    assert undo.links == {"reverses": kept.n} and undo.status == "discard"
    last = entries[-1]
    assert last.changes == ["MATRIX_LR 0.04 -> 0.05"] and last.delta == pytest.approx(0.0)
    # lost (a disk cleanup, an older version): the next run writes it again from the ledger
    path = repo / ".autoresearch" / TAG / JOURNAL
    before = [(e.n, e.kind, e.changes, e.status, e.fingerprint, e.hypothesis) for e in entries]
    path.unlink()
    run_loop(repo, [], max_experiments=4)
    assert [(e.n, e.kind, e.changes, e.status, e.fingerprint, e.hypothesis)
            for e in journal_of(repo)] == before  # the hypothesis comes back from the commit
    assert "journal: wrote the entries of" in (
        repo / ".autoresearch" / TAG / "events.log").read_text()


@pytest.mark.slow
def test_a_program_that_ran_is_not_run_again(repo):
    def same_change_other_layout(text):
        changed = set_constants(text, MATRIX_LR=0.05)
        return changed.replace("MATRIX_LR = 0.05", "MATRIX_LR  =  0.05  # rephrased")

    steps = [edit("faster matrices", MATRIX_LR=0.05),
             rewrite("the same idea, renamed", same_change_other_layout),
             rewrite("a comment only", lambda t: t.replace("# what this", "# what the")),
             edit("something new", BONUS=0.2)]
    _, agent, _ = run_loop(repo, steps, max_experiments=2)
    assert [r.description for r in tag_rows(repo)] == ["baseline", "faster matrices",
                                                       "something new"]
    events = (repo / ".autoresearch" / TAG / "events.log").read_text()
    assert "not run: this is #2 again (+0.000000 vs its parent), discard: faster matrices" \
        in events
    assert "not run: it changes nothing but comments" in events
    assert "this is #2 again" in agent.requests[2].feedback  # the agent is told, once
    assert "changes nothing but comments" in agent.requests[3].feedback
    assert "# Note" in build_context(agent.requests[3])
    assert load_state(repo, TAG).duplicates == 2  # runs saved
    summary = run_cli("summary", "--repo", str(repo), "--json")
    assert json.loads(summary.stdout)["runs_saved"] == 2
    assert "runs saved" in run_cli("summary", "--repo", str(repo)).stdout


@pytest.mark.slow
def test_the_plateau_note(repo):
    steps = [edit(f"no-op {k}", MATRIX_LR=0.05 + 0.01 * k) for k in range(4)]
    _, agent, _ = run_loop(repo, steps, plateau_after=3)
    assert [r.plateau for r in agent.requests] == [0, 0, 0, 3]
    assert "The last 3 experiments in a row were not kept" in build_context(agent.requests[3])


def synthetic_night(n: int, seed: int = 0) -> list[Entry]:
    """A long night of a learning-rate-heavy agent: keeps now and then, crashes, near-misses."""
    rng = random.Random(seed)
    entries, best, parent = [Entry(1, "baseline", "b000001", "", 0, "baseline", status="keep",
                                   val_bpb=1.0)], 1.0, "b000001"
    knobs = ["MATRIX_LR", "EMBEDDING_LR", "WARMDOWN_RATIO", "WEIGHT_DECAY", "DEPTH"]
    for i in range(2, n + 2):
        knob = rng.choice(knobs)
        change = f"{knob} {rng.random():.3f} -> {rng.random():.3f}"
        commit = f"c{i:06d}"
        if rng.random() < 0.05:
            entries.append(Entry(i, "experiment", commit, parent, 0, f"try {knob}",
                                 changes=[change], status="crash", reason="oom"))
            continue
        delta = rng.gauss(0.002, 0.004)
        status = "keep" if delta < -0.006 else "discard"
        entries.append(Entry(i, "experiment", commit, parent, 0, f"try {knob}",
                             changes=[change], status=status, val_bpb=best + delta, delta=delta))
        if status == "keep":
            best, parent = best + delta, commit
    return entries


def test_the_prompt_after_a_long_night_holds_the_whole_night_in_a_bounded_space():
    entries = synthetic_night(200)
    digest = build_digest(entries, PROGRAM)
    request = AgentRequest(repo=Path("."), program=PROGRAM, train_py="X = 1\n", history=[],
                           best_val_bpb=0.95, noise_threshold=0.004, digest=digest)
    prompt = build_context(request)
    kept = [e for e in entries if e.status == "keep" and e.kind == "experiment"]
    assert f"#{kept[0].n}" in prompt and f"#{kept[-1].n}" in prompt  # the kept chain
    for theme in ("learning rates", "schedule", "regularisation", "architecture"):
        assert theme in prompt  # what failed, by theme
    assert "oom" in prompt  # crash causes
    assert "Ideas from program.md not tried yet" in prompt
    long_night = build_context(AgentRequest(
        repo=Path("."), program=PROGRAM, train_py="X = 1\n", history=[],
        digest=build_digest(synthetic_night(500, seed=1), PROGRAM)))
    assert len(long_night) < len(PROGRAM) + 4 * 2000 + 2000  # bounded, however long the night


@pytest.mark.slow
def test_the_sweep_never_runs_a_measured_point(repo):
    """The real sweep agent against the fake trainer: every run's constants differ."""
    from autoresearch.agents.sweep import SweepAgent

    run_loop(repo, [], agent=SweepAgent(seed=0), max_experiments=12)
    points = [tuple(sorted((k, str(v)) for k, v in e.constants.items()))
              for e in journal_of(repo) if e.kind in ("experiment", "fix", "port")]
    assert len(points) == len(set(points)) >= 12

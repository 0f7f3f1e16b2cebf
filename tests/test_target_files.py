"""A target whose agents edit two files (model.py and features.py): the whole loop with the
sweep and with an API agent on a loopback server, the guard around both files, and a change
carried across both onto a newer best. Real git repos, real runs of the target's command."""

from __future__ import annotations

from pathlib import Path

import pytest
from loop_helpers import git, run_cli, run_loop, set_constants, tag_rows
from target_helpers import make_two_file_repo
from test_agents_api import chat_reply, server  # noqa: F401 (the loopback server fixture)

from autoresearch.agents import Proposal, Usage, make_agent
from autoresearch.memory.journal import load as load_journal
from autoresearch.review.dashboard import Board
from autoresearch.target import load_target
from autoresearch.workspace.git import Git
from autoresearch.workspace.merge import carry

EDITABLE = {"model.py", "features.py"}


def changed_files(repo: Path, old: str, new: str) -> set[str]:
    return set(git(repo, "diff", "--name-only", old, new).split())


def journal(repo: Path) -> dict:
    return {e.n: e for e in load_journal(repo / ".autoresearch" / "t" / "journal.jsonl")}


@pytest.mark.slow
def test_the_sweep_moves_the_constants_of_both_files_through_the_cli(tmp_path: Path) -> None:
    repo = make_two_file_repo(tmp_path / "two")
    base = git(repo, "rev-parse", "HEAD")
    ran = run_cli("-C", ".", "run", "--tag", "t", "--agent", "sweep", "--max-experiments", "6",
                  "--plain", cwd=repo, timeout=240)
    assert ran.returncode == 0, ran.stderr
    rows = tag_rows(repo)
    kept = [-r.val_bpb for r in rows if r.status == "keep" and r.kind == "experiment"]
    assert kept and max(kept) > 0.45  # the baseline's accuracy, raised
    # every commit of the tag changed the editable files and nothing else
    for commit in git(repo, "rev-list", f"{base}..autoresearch/t").split():
        assert changed_files(repo, f"{commit}^", commit) <= EDITABLE
    for row in rows:
        assert changed_files(repo, base, row.commit) <= EDITABLE
    # the journal knows the knobs of both files, each by its file, and the moves of both
    entries = journal(repo)
    assert set(entries[1].constants) == {"model.py:WEIGHT", "features.py:SCALE"}
    moved = {item.split(" ")[0] for e in entries.values() for item in e.changes}
    assert moved == {"model.py:WEIGHT", "features.py:SCALE"}
    # `diff` shows what a keep changed, in whichever file it changed
    keep = next(r for r in rows if r.status == "keep" and r.kind == "experiment")
    shown = run_cli("-C", ".", "diff", str(keep.experiment), cwd=repo).stdout
    board = Board(repo, repo / "results.tsv").diff(str(keep.experiment))
    for name in changed_files(repo, keep.parent, keep.commit):
        assert f"+++ b/{name}" in shown and f"+++ b/{name}" in board["text"]  # and the dashboard's


def knob_block(file: str, line: str, value: str) -> str:
    """One SEARCH/REPLACE block that sets a knob's value, its line quoted as the file has it."""
    name, _, rest = line.partition(" = ")
    new = f"{name} = {value}  {rest.partition('  ')[2]}"
    return f"FILE: {file}\n<<<<<<< SEARCH\n{line}\n=======\n{new}\n>>>>>>> REPLACE\n"


BOTH = ("DESCRIPTION: move both knobs to their best\n"
        + knob_block("model.py", "WEIGHT = 0.5  # the closer to 0.8, the better", "0.8")
        + knob_block("features.py", "SCALE = 1.0  # the closer to 2.0, the better", "2.0"))


def test_an_api_agent_edits_both_files_naming_each_blocks_file(server, tmp_path):  # noqa: F811
    repo = make_two_file_repo(tmp_path / "two")
    base = git(repo, "rev-parse", "HEAD")
    server.expect_path = "/v1/chat/completions"
    unnamed = "\n".join(line for line in BOTH.splitlines() if not line.startswith("FILE:"))
    server.reply(200, chat_reply(unnamed))  # which file? sent back once, then answered right
    server.reply(200, chat_reply(BOTH))
    agent = make_agent("openai", model="qwen3-coder",
                       base_url=f"http://127.0.0.1:{server.port}/v1", timeout=5.0)
    reason, _, _ = run_loop(repo, [None], agent=agent, target=load_target(repo), timeout=None)
    assert reason == "reached --max-experiments 1"
    assert [(r.kind, r.status, -r.val_bpb) for r in tag_rows(repo)] == [
        ("baseline", "keep", 0.45), ("experiment", "keep", 1.0), ("confirm", "keep", 1.0)]
    assert changed_files(repo, base, "autoresearch/t") == EDITABLE
    assert journal(repo)[2].changes == ["model.py:WEIGHT 0.5 -> 0.8",
                                        "features.py:SCALE 1.0 -> 2.0"]
    (_, _, first), (_, _, second) = server.requests
    system, user = first["messages"]
    assert "FILE: <the file the blocks below edit: one of model.py, features.py>" in \
        system["content"]
    assert "You improve model.py and features.py" in system["content"]
    assert "# Current model.py\n```python\n" in user["content"]
    assert "# Current features.py\n```python\n" in user["content"]
    assert "train.py" not in system["content"] + user["content"]
    follow_up = second["messages"][-1]["content"]
    assert "block 1: no FILE line names the file it edits" in follow_up
    assert "model.py and features.py" in follow_up and "train.py" not in follow_up


def edit_two(description: str, also: dict[str, str] | None = None, **values: object):
    """An agent step: set constants in whichever editable file has them, and write `also`."""
    def step(request) -> Proposal:
        for name in request.target.editable:
            path = request.repo / name
            path.write_text(set_constants(path.read_text(), **{
                k: v for k, v in values.items() if f"\n{k} = " in path.read_text()}))
        for name, text in (also or {}).items():
            (request.repo / name).write_text(text)
        return Proposal(description, Usage(cost_usd=0.0))
    return step


def test_an_edit_outside_the_two_files_is_refused(tmp_path: Path) -> None:
    repo = make_two_file_repo(tmp_path / "two")
    cheat = {"evaluate.py": "print('---')\nprint('accuracy: 1.0')\n"}
    steps = [edit_two("cheat", also=cheat, WEIGHT=0.6), edit_two("honest", WEIGHT=0.7, SCALE=1.5)]
    _, _, ui = run_loop(repo, steps, target=load_target(repo), timeout=None, max_experiments=1)
    assert any("proposal rejected: changed files other than model.py and features.py: "
               "evaluate.py" in e for e in ui.events)
    rows = tag_rows(repo)
    assert [(r.kind, r.status) for r in rows][:2] == [("baseline", "keep"),
                                                      ("experiment", "keep")]
    assert git(repo, "show", f"{rows[1].commit}:evaluate.py") == \
        git(repo, "show", "HEAD:evaluate.py")
    assert git(repo, "status", "--porcelain") == ""


def commit(repo: Path, parent: str, **values: object) -> str:
    """A commit of the editable files on `parent` with these constants set (in either file)."""
    g = Git(repo, ("model.py", "features.py"))
    files = g.sources_at(parent)
    files = {name: set_constants(text, **{k: v for k, v in values.items() if f"\n{k} = " in text})
             for name, text in files.items()}
    return g.commit_files(parent, files, "a change")


def test_a_change_to_both_files_is_carried_onto_a_newer_best(tmp_path: Path) -> None:
    """The rebase of a proposal and the port of a keep: every editable file merged, one commit;
    a conflict in either file is a conflict of the change."""
    repo = make_two_file_repo(tmp_path / "two")
    g = Git(repo, load_target(repo).editable)
    base = g.head()
    (repo / "features.py").write_text(FEATURES_WITH_BIAS)
    git(repo, "commit", "-q", "-am", "a second knob in features.py")
    grown = g.head()
    best = commit(repo, grown, BIAS=0.25)  # the best moved on: features.py's other line
    change = commit(repo, grown, WEIGHT=0.8, SCALE=2.0)  # proposed on the old best
    carried = carry(g, grown, best, change, "rebased")
    assert carried.commit is not None and g.parent(carried.commit) == best
    merged = g.sources_at(carried.commit)
    assert "WEIGHT = 0.8\n" in merged["model.py"]
    assert "SCALE = 2.0\n" in merged["features.py"] and "BIAS = 0.25\n" in merged["features.py"]
    assert changed_files(repo, best, carried.commit) == EDITABLE
    # the same knob moved both ways: features.py conflicts, so the change does
    other = commit(repo, grown, SCALE=3.0)
    clash = carry(g, grown, other, change, "rebased")
    assert clash.commit is None
    assert "# model.py\n" in clash.text and "# features.py\n" in clash.text
    assert "<<<<<<< current best" in clash.files["features.py"]
    assert "<<<<<<<" not in clash.files["model.py"]
    assert g.diff(base, change).count("+++ b/") == 2


FEATURES_WITH_BIAS = '''"""The features: SCALE decides the other half."""

SCALE = 1.0  # the closer to 2.0, the better
# a line between the two knobs, so that their edits merge without a conflict

BIAS = 0.0  # not scored
'''

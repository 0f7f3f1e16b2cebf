"""Git operations and the edit check: only train.py moves, nobody else's files are touched."""

import pytest
from loop_helpers import git, make_repo

from autoresearch.errors import UserError
from autoresearch.workspace.git import Git
from autoresearch.workspace.proposal import check_edit, take_snapshot


@pytest.fixture
def repo(tmp_path):
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "-b", "autoresearch/t")
    return repo


def test_commit_train_commits_only_train_py(repo):
    g = Git(repo)
    base = g.head()
    (repo / "train.py").write_text("x = 1\n")
    (repo / "prepare.py").write_text("# staged by someone\n")
    git(repo, "add", "prepare.py")
    commit = g.commit_train("try x = 1")
    assert g.parent(commit) == base
    assert git(repo, "show", "--name-only", "--format=", commit) == "train.py"
    assert git(repo, "log", "-1", "--format=%s", commit) == "try x = 1"
    assert g.is_dirty("prepare.py")  # still staged, not committed


def test_commit_works_without_a_git_identity(repo, monkeypatch):
    git(repo, "config", "--unset", "user.email")
    git(repo, "config", "--unset", "user.name")
    monkeypatch.setenv("HOME", str(repo.parent))  # no global identity either
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (repo / "train.py").write_text("x = 2\n")
    assert Git(repo).commit_train("x = 2")


def test_move_back_restores_train_py_and_nothing_else(repo):
    g = Git(repo)
    best = g.head()
    (repo / "notes.txt").write_text("mine\n")  # untracked
    (repo / "results.tsv").write_text("ignored ledger\n")  # ignored
    (repo / "program.md").write_text("# human edit, uncommitted\n")  # tracked, modified
    (repo / "train.py").write_text("x = 3\n")
    tried = g.commit_train("x = 3")
    g.set_ref("refs/autoresearch/t/tried/2", tried)
    g.move_back("autoresearch/t", best)
    assert g.head() == best and g.current_branch() == "autoresearch/t"
    assert (repo / "train.py").read_text() == g.file_at(best)
    assert not g.is_dirty("train.py")
    assert (repo / "notes.txt").read_text() == "mine\n"
    assert (repo / "results.tsv").read_text() == "ignored ledger\n"
    assert (repo / "program.md").read_text() == "# human edit, uncommitted\n"
    assert g.resolve("refs/autoresearch/t/tried/2") == tried
    assert "x = 3" in g.show(tried)


def test_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a git repository"):
        Git(tmp_path).check_repo()
    with pytest.raises(UserError, match="git rev-parse"):
        Git(tmp_path).run("rev-parse", "HEAD")


def test_agent_edit_to_prepare_py_is_rejected_and_restored(repo):
    g = Git(repo)
    (repo / "program.md").write_text("# the human's uncommitted steering\n")
    (repo / "scratch.txt").write_text("an untracked file from before\n")
    snap = take_snapshot(g)
    # the agent: edits train.py, but also prepare.py, and leaves a stray file behind
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\nX = 1\n")
    (repo / "prepare.py").write_text("# cheating\n")
    (repo / "helper.py").write_text("stray\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "new.py").write_text("stray too\n")
    reason, _ = check_edit(g, "autoresearch/t", snap)
    assert reason.startswith("changed files other than train.py")
    assert "prepare.py (restored)" in reason and "helper.py (new file, removed)" in reason
    assert (repo / "prepare.py").read_text() == "# the fixed harness\n"
    assert not (repo / "helper.py").exists() and not (repo / "sub" / "new.py").exists()
    assert (repo / "program.md").read_text() == "# the human's uncommitted steering\n"
    assert (repo / "scratch.txt").exists()


def test_changes_to_files_that_were_already_dirty_are_noted_not_rejected(repo):
    g = Git(repo)
    (repo / "nohup.out").write_text("loop output\n")  # grows while the agent works
    snap = take_snapshot(g)
    (repo / "nohup.out").write_text("loop output\nmore\n")
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\nX = 1\n")
    reason, notes = check_edit(g, "autoresearch/t", snap)
    assert reason is None
    assert any("nohup.out" in n for n in notes)
    assert (repo / "nohup.out").read_text() == "loop output\nmore\n"


def test_agent_that_commits_by_itself_is_put_back(repo):
    g = Git(repo)
    snap = take_snapshot(g)
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\nX = 1\n")
    (repo / "other.txt").write_text("committed by the agent\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "agent commit")
    reason, notes = check_edit(g, "autoresearch/t", snap)
    assert g.head() == snap.head
    assert "other.txt (new file, removed)" in reason
    assert not (repo / "other.txt").exists()
    assert "X = 1" in (repo / "train.py").read_text()  # the edit itself is left for the caller


@pytest.mark.parametrize("new_text, expected", [
    (None, "train.py is unchanged"),
    ("def broken(:\n", "train.py does not compile: SyntaxError"),
])
def test_unchanged_or_uncompilable_edits_are_rejected(repo, new_text, expected):
    g = Git(repo)
    snap = take_snapshot(g)
    if new_text is not None:
        (repo / "train.py").write_text(new_text)
    reason, _ = check_edit(g, "autoresearch/t", snap)
    assert reason.startswith(expected)


def test_a_good_edit_passes(repo):
    g = Git(repo)
    snap = take_snapshot(g)
    (repo / "train.py").write_text((repo / "train.py").read_text().replace("1.0", "0.9", 1))
    assert check_edit(g, "autoresearch/t", snap) == (None, [])


def test_a_fix_that_reverts_to_the_best_code_is_rejected(repo):
    # when fixing a crash the agent is handed the crashed code; putting the best commit's
    # train.py back is no experiment (and there would be nothing to commit)
    g = Git(repo)
    best = (repo / "train.py").read_text()
    (repo / "train.py").write_text(best + "\nX = undefined_name\n")
    snap = take_snapshot(g)
    (repo / "train.py").write_text(best)
    reason, _ = check_edit(g, "autoresearch/t", snap)
    assert reason == "train.py is unchanged from the best commit"

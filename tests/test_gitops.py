"""Git operations and the work trees: commits from a temporary index, branch moves by
compare-and-swap, three-way merges, no hooks, and the edit check in a worker's own tree."""

import pytest
from loop_helpers import edit, git, make_repo, run_loop

from autoresearch.errors import UserError
from autoresearch.ledger.tags import open_tag, run_files
from autoresearch.workspace.git import Git, commit_message
from autoresearch.workspace.merge import merge, replace_blocks
from autoresearch.workspace.slots import Slot


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def test_commit_files_touches_no_head_and_commits_only_train_py(repo):
    g = Git(repo)
    base = g.head()
    (repo / "prepare.py").write_text("# staged by someone\n")
    git(repo, "add", "prepare.py")
    commit = g.commit_files(base, {"train.py": "x = 1\n"},
                            "try x = 1\n\nHypothesis: smaller is better")
    assert g.parent(commit) == base and g.head() == base  # nothing checked out or moved
    assert git(repo, "show", "--name-only", "--format=", commit) == "train.py"
    assert g.file_at(commit) == "x = 1\n"
    assert git(repo, "log", "-1", "--format=%s", commit) == "try x = 1"
    assert g.hypothesis(commit) == "smaller is better" and g.hypothesis(base) == ""
    assert g.is_dirty("prepare.py")  # the user's staged change stays staged, uncommitted


def test_commit_works_without_a_git_identity(repo, monkeypatch):
    git(repo, "config", "--unset", "user.email")
    git(repo, "config", "--unset", "user.name")
    monkeypatch.setenv("HOME", str(repo.parent))  # no global identity either
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    g = Git(repo)
    assert g.commit_files(g.head(), {"train.py": "x = 2\n"}, "x = 2")


def test_the_branch_moves_only_from_where_the_loop_left_it(repo):
    g = Git(repo)
    base = g.head()
    g.create_branch("autoresearch/t", base)
    one = g.commit_files(base, {"train.py": "x = 1\n"}, "one")
    two = g.commit_files(base, {"train.py": "x = 2\n"}, "two")
    g.set_ref("refs/heads/autoresearch/t", one, old=base)
    with pytest.raises(UserError, match="update-ref"):  # someone else moved it first
        g.set_ref("refs/heads/autoresearch/t", two, old=base)
    assert g.resolve("autoresearch/t") == one and g.current_branch() == "main"


def test_three_way_merge_of_train_py():
    g = Git(".")
    base = "a = 1\nb = 2\nc = 3\nd = 4\n"
    merged, conflicts = g.merge3(base, "a = 10\nb = 2\nc = 3\nd = 4\n",
                                 "a = 1\nb = 2\nc = 3\nd = 40\n")
    assert (merged, conflicts) == ("a = 10\nb = 2\nc = 3\nd = 40\n", 0)
    merged, conflicts = g.merge3(base, "a = 10\nb = 2\nc = 3\nd = 4\n",
                                 "a = 11\nb = 2\nc = 3\nd = 4\n")
    assert conflicts == 1 and "<<<<<<< current best" in merged and ">>>>>>> the change" in merged


def test_hooks_never_run_in_the_loops_git_commands(repo, tmp_path):
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\necho ran >> {marker}\n")
    hook.chmod(0o755)
    g = Git(repo)
    g.add_worktree(tmp_path / "tree", g.head())
    Git(tmp_path / "tree").run("checkout", "--quiet", "--detach", "--force", g.head())
    assert (tmp_path / "tree" / "train.py").exists() and not marker.exists()


def test_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a git repository"):
        Git(tmp_path).check_repo()
    with pytest.raises(UserError, match="git rev-parse"):
        Git(tmp_path).run("rev-parse", "HEAD")



def test_a_file_is_read_by_commit_so_a_moved_ref_reads_its_new_commit(repo):
    g = Git(repo, ("train.py", "prepare.py"))
    first = g.file_at("HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "HEAD moves, train.py stays")
    (repo / "train.py").write_text("x = 4\r\n")  # text reads as git's text output did: LF
    git(repo, "commit", "-qam", "train.py changes")
    assert first != "x = 4\n" and g.file_at("HEAD") == "x = 4\n"
    assert g.sources_at("main") == {"train.py": "x = 4\n", "prepare.py": "# the fixed harness\n"}
    assert g.blob_at("HEAD", "train.py") == b"x = 4\r\n"  # bytes stay bytes
    with pytest.raises(UserError, match=r"^git: nothing.py is not a file in commit \w{7}$"):
        g.file_at("HEAD", "nothing.py")
    with pytest.raises(UserError, match=r"^git: no-such-branch does not name a commit$"):
        g.file_at("no-such-branch")


def test_a_night_reads_each_file_of_a_commit_from_git_once(repo, monkeypatch):
    """Commits never change: however many experiments came before, a proposal or a run reads
    only what no earlier step read (so git's work per experiment does not grow with the night)."""
    reads: list[str] = []
    real = Git._git

    def counting(self, *args, stdin=None, **kw):
        command = [a for a in args if a != "-c" and "=" not in a]
        if command[:2] == ["cat-file", "--batch"]:
            reads.extend(stdin.decode().splitlines())
        elif command[0] == "show" and ":" in command[-1]:
            reads.append(command[-1])
        return real(self, *args, stdin=stdin, **kw)

    monkeypatch.setattr(Git, "_git", counting)
    steps = [edit(f"try {i}", VAL_BPB=1.0 + (-1) ** i * (i + 1) / 100) for i in range(4)]
    run_loop(repo, steps, tag="once")
    assert reads and len(reads) == len(set(reads)), sorted(reads)

@pytest.fixture
def slot(repo, tmp_path):
    tree = Slot(Git(repo), repo / ".autoresearch" / "t" / "trees" / "0", 0)
    tree.reset(Git(repo).head(), tmp_path / "undo")
    return tree


def check(slot, repo, tmp_path):
    g = Git(repo)
    return slot.vet(g.head(), tmp_path / "undo", g.refs("refs/heads", "refs/tags"))


def test_a_fresh_tree_is_exactly_the_commit(slot, repo):
    assert (slot.path / "train.py").read_text() == (repo / "train.py").read_text()
    assert slot.intact() and slot.changed_paths() == []


def test_everything_but_train_py_is_undone_with_a_copy(slot, repo, tmp_path):
    (slot.path / "train.py").write_text((slot.path / "train.py").read_text() + "\nX = 1\n")
    (slot.path / "prepare.py").write_text("# cheating\n")
    (slot.path / "helper.py").write_text("stray\n")
    (slot.path / "sub").mkdir()
    (slot.path / "sub" / "new.py").write_text("stray too\n")
    (slot.path / "__pycache__").mkdir()  # ignored: a planted bytecode file
    (slot.path / "__pycache__" / "prepare.cpython-311.pyc").write_bytes(b"x")
    result = check(slot, repo, tmp_path)
    assert result.reason == ("changed files other than train.py: __pycache__, helper.py, "
                             "prepare.py, sub/new.py")
    assert (slot.path / "prepare.py").read_text() == "# the fixed harness\n"
    assert not (slot.path / "helper.py").exists() and not (slot.path / "sub").exists()
    assert not (slot.path / "__pycache__").exists()
    assert (tmp_path / "undo" / "prepare.py").read_text() == "# cheating\n"
    assert "X = 1" in (slot.path / "train.py").read_text()  # the edit itself is kept


@pytest.mark.parametrize("new_text, expected", [
    (None, "train.py is unchanged from the best commit"),
    ("def broken(:\n", "train.py does not compile: SyntaxError"),
    ("", "train.py was deleted"),
])
def test_edits_that_cannot_run(slot, repo, tmp_path, new_text, expected):
    if new_text == "":
        (slot.path / "train.py").unlink()
    elif new_text is not None:
        (slot.path / "train.py").write_text(new_text)
    assert check(slot, repo, tmp_path).reason.startswith(expected)


def test_a_good_edit_passes(slot, repo, tmp_path):
    text = (slot.path / "train.py").read_text().replace("1.0", "0.9", 1)
    (slot.path / "train.py").write_text(text)
    result = check(slot, repo, tmp_path)
    assert (result.reason, result.undone, result.notes) == (None, [], [])
    assert result.files == {"train.py": text}


def test_edits_of_neighbouring_lines_are_re_applied_where_git_sees_a_conflict():
    g = Git(".")
    base = "A = 1\nB = 2\nC = 3\n"
    best = "A = 10\nB = 2\nC = 3\n"  # kept meanwhile: the line next to the change
    change = "A = 1\nB = 20\nC = 3\n"
    assert g.merge3(base, best, change)[1] == 1  # git: neighbouring hunks conflict
    assert merge(g, base, best, change) == ("A = 10\nB = 20\nC = 3\n", 0)
    same_line = "A = 11\nB = 2\nC = 3\n"
    assert merge(g, base, best, same_line)[1] == 1  # the same line: a real conflict
    inserted = "A = 1\nB = 2\nX = 9\nC = 3\n"
    assert replace_blocks(base, inserted, best) is None  # a pure insertion has no anchor


def test_a_run_gets_its_train_py_and_the_harness_bytes_only_while_the_harness_is_unchanged(repo):
    g = Git(repo)
    state = open_tag(g, "h", "")
    edited = g.commit_files(state.base_commit, {"train.py": "x = 3\n"}, "an experiment")
    files = run_files(g, edited, state)
    assert files["train.py"] == "x = 3\n" and files["prepare.py"] == b"# the fixed harness\n"
    moved = g.commit_files(edited, {"prepare.py": "# the harness, edited\n"}, "the harness moved")
    with pytest.raises(UserError, match=r"^prepare.py changed since tag h started"):
        run_files(g, moved, state)


def test_commit_message_says_what_made_it_and_hides_secrets():
    message = commit_message("try sk-ant-api03-" + "a" * 40, "faster", "t, experiment, worker 1")
    assert message.endswith("Hypothesis: faster\n\nautoresearch (t, experiment, worker 1)")
    assert "a" * 40 not in message

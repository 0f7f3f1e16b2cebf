"""The quick run (`pytest -m "not slow"`) reaches every module of the package: marking a test
slow must not leave a module that only the slow tests load."""

import ast
from pathlib import Path

from test_imports import PACKAGE, REPO, module_name


def package_modules() -> dict[str, Path]:
    return {module_name(p, REPO): p for p in PACKAGE.rglob("*.py")}


def is_slow(node: ast.AST) -> bool:
    """A decorator or `pytestmark` value that is `pytest.mark.slow`."""
    return "mark.slow" in ast.unparse(node)


def has_quick_test(tree: ast.Module) -> bool:
    """Whether a test file holds a test that `-m "not slow"` runs."""
    if any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark"
                                             for t in n.targets) and is_slow(n.value)
           for n in tree.body):
        return False
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test")
               and not any(is_slow(d) for d in n.decorator_list) for n in ast.walk(tree))


def loaded_by(tree: ast.Module, known: set[str]) -> set[str]:
    """Modules of `known` that a file imports (at any depth of its code) or starts as
    `python -m` (a string naming one)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    # importing a.b.c runs a/__init__ and a/b/__init__ first
    parents = {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 1)}
    return (names | parents) & known


def reached(start: set[str], trees: dict[str, ast.Module], known: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in trees:
            todo.extend(loaded_by(trees[name], known) - seen)
    return seen


class WithoutSlowTests(ast.NodeTransformer):
    """A test file as the quick run executes it: its slow tests' bodies never run."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST | None:
        return None if any(is_slow(d) for d in node.decorator_list) else node


def test_every_module_of_the_package_is_loaded_by_a_quick_test():
    modules = package_modules()
    trees = {name: ast.parse(path.read_text()) for name, path in modules.items()}
    # the CLI script: test_cli loads it by name, and its commands import the package lazily
    trees["agent_loop"] = ast.parse((REPO / "agent_loop.py").read_text())
    for path in (REPO / "tests").glob("*.py"):  # test files and their helpers (loop_helpers...)
        trees[path.stem] = WithoutSlowTests().visit(ast.parse(path.read_text()))
    quick = {p.stem for p in (REPO / "tests").glob("test_*.py") if has_quick_test(trees[p.stem])}
    missing = sorted(set(modules) - reached({"conftest"} | quick, trees, set(trees)))
    assert not missing, f"no quick test loads {', '.join(missing)}: test it, or keep a quick " \
                        "test of it unmarked"


def test_the_check_sees_a_module_that_only_slow_tests_load():
    source = ("import pytest\nfrom autoresearch.verify import private\n\n"
              "@pytest.mark.slow\ndef test_x():\n    import autoresearch.bench\n\n"
              "def test_y():\n    pass\n")
    tree = ast.parse(source)
    assert has_quick_test(tree)
    known = set(package_modules())
    assert "autoresearch.bench" in loaded_by(tree, known)
    assert loaded_by(WithoutSlowTests().visit(tree), known) == {
        "autoresearch", "autoresearch.verify", "autoresearch.verify.private"}
    slow_only = ast.parse("import pytest\n\npytestmark = pytest.mark.slow\n\ndef test_z():\n"
                          "    pass\n")
    assert not has_quick_test(slow_only)
    started = ast.parse('CMD = ["python", "-m", "autoresearch.verify.evaluate"]\n')
    assert "autoresearch.verify.evaluate" in loaded_by(started, known)

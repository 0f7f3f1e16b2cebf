"""The package's imports run one way (issue 20): a scan of autoresearch/**.py with ast.

Nodes are autoresearch's packages (autoresearch.ledger) and top-level modules (autoresearch.policy);
an edge is any import of one by another, wherever it stands (a function, TYPE_CHECKING), because
each one is a dependency a reader and a refactor must follow. Three promises:
- no two nodes reach each other (no cycle between packages);
- the bottom modules, model.py and names.py, import nothing of ours;
- a package is used from outside only through the names its __init__ lists in __all__. The
  names are imported from the module that defines them: __all__ says what is offered without
  making the package's __init__ import every module (sample.py would bring torch to `status`).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "autoresearch"
BOTTOM = ("autoresearch.model", "autoresearch.names")


def module_name(path: Path, root: Path) -> str:
    """A source file's dotted name: autoresearch/ledger/state.py -> autoresearch.ledger.state."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def node_of(module: str) -> str:
    """The scan's node for a module: its package, or the top-level module itself."""
    return ".".join(module.split(".")[:2])


def imports(path: Path, module: str) -> list[tuple[str, str | None]]:
    """Every import of ours in a file, as (module imported from, name or None), relative ones
    resolved against `module`."""
    found: list[tuple[str, str | None]] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(base, alias.name) for alias in node.names]
    return [(m, name) for m, name in found if m == "autoresearch" or m.startswith("autoresearch.")]


def scan(root: Path) -> dict[str, list[tuple[str, str | None]]]:
    """Module name -> its imports of ours, for every .py file under root/autoresearch."""
    return {module_name(p, root): imports(p, module_name(p, root))
            for p in sorted((root / "autoresearch").rglob("*.py"))}


def target(source: str, name: str | None, modules: set[str]) -> str:
    """What an import reaches: `from autoresearch import policy` reaches autoresearch.policy."""
    if name and f"{source}.{name}" in modules:
        return f"{source}.{name}"
    return source


def package_edges(found: dict[str, list[tuple[str, str | None]]]) -> dict[str, set[str]]:
    """Node -> the nodes it imports (the package root `autoresearch` itself is no node)."""
    modules = set(found)
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imported in found.items():
        if module == "autoresearch":
            continue
        for source, name in imported:
            reached = node_of(target(source, name, modules))
            if reached not in ("autoresearch", node_of(module)):
                edges[node_of(module)].add(reached)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of nodes that reach each other (more than one node to a group)."""
    reach = {n: set(targets) for n, targets in edges.items()}
    changed = True
    while changed:  # the transitive closure: a graph of about twenty nodes
        changed = False
        for reached in reach.values():
            more = set().union(*(reach.get(m, set()) for m in reached)) - reached
            if more:
                reached |= more
                changed = True
    groups = {tuple(sorted({n} | {m for m in reach[n] if n in reach.get(m, ())})) for n in reach}
    return sorted(list(g) for g in groups if len(g) > 1)


def declared(root: Path, package: str) -> set[str] | None:
    """The names a package's __init__ lists in __all__; None when it has no __all__."""
    init = root / Path(*package.split(".")) / "__init__.py"
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return None


def outside_all(root: Path, found: dict[str, list[tuple[str, str | None]]]) -> list[str]:
    """Imports of a package's names from outside it that its __all__ does not offer."""
    modules = set(found)
    packages = {m for m in modules if (root / Path(*m.split(".")) / "__init__.py").exists()}
    wrong = []
    for module, imported in found.items():
        for source, name in imported:
            package = node_of(target(source, name, modules))
            if package not in packages or package == "autoresearch" or \
                    node_of(module) == package:
                continue
            offered = declared(root, package) or set()
            used = name if source.startswith(package) and name else source.rpartition(".")[2]
            if used not in offered:
                wrong.append(f"{module} imports {used} from {source}: not in {package}.__all__")
    return wrong


def top_level_names(path: Path) -> set[str]:
    """What a module defines or imports at its top level."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def unknown_offers(root: Path) -> list[str]:
    """Names a package's __all__ lists that none of its modules defines (nor is a module)."""
    wrong = []
    for init in sorted((root / "autoresearch").glob("*/__init__.py")):
        package = init.parent
        defined = {p.stem for p in package.glob("*.py")}
        for path in package.glob("*.py"):
            defined |= top_level_names(path)
        offered = declared(root, module_name(init, root))
        if offered is None:
            wrong.append(f"{package.name}/__init__.py has no __all__")
        wrong += [f"{package.name}.__all__ lists {n}, which it lacks"
                  for n in sorted((offered or set()) - defined)]
    return wrong


def test_no_cycle_between_packages():
    assert cycles(package_edges(scan(REPO))) == []


def test_bottom_modules_import_nothing_of_ours():
    found = scan(REPO)
    assert {m: found[m] for m in BOTTOM if found.get(m)} == {}
    assert set(BOTTOM) <= set(found)


def test_packages_are_used_through_their_all():
    assert outside_all(REPO, scan(REPO)) == []


def test_every_package_offers_what_it_has():
    assert unknown_offers(REPO) == []


def test_the_scan_finds_a_cycle_and_an_import_outside_all(tmp_path):
    """The scan itself can fail: a made-up package pair that import each other is a cycle, and a
    name its __all__ does not list is reported."""
    pkg = tmp_path / "autoresearch"
    for name, body in {"a": "from autoresearch.b.x import hidden\n",
                       "b": "from ..a import y\n"}.items():
        (pkg / name).mkdir(parents=True)
        (pkg / name / "__init__.py").write_text(f'__all__ = ["y"]\n{body}')
    (pkg / "__init__.py").write_text("")
    (pkg / "b" / "x.py").write_text("hidden = 1\n")
    found = scan(tmp_path)
    assert cycles(package_edges(found)) == [["autoresearch.a", "autoresearch.b"]]
    assert outside_all(tmp_path, found) == [
        "autoresearch.a imports hidden from autoresearch.b.x: not in autoresearch.b.__all__"]
    assert unknown_offers(tmp_path) == ["a.__all__ lists y, which it lacks"]

"""The application packages import one another without a cycle.

Every import counts, including those inside functions (a deferred import is still a
dependency: it only hides the cycle from the interpreter until the function runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("graph", "gnn", "api", "loaders", "limits")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """The names each import in `tree` refers to: `a.b` for `import a.b`; for
    `from a import b`, `a.b` (b may be a submodule), which the caller shortens to `a`
    when it is not one."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        elif (literal := _literal_import(node)) is not None:
            names.append(literal)
    return names


def _calls_import_module(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return called in ("import_module", "__import__")


def _literal_import(node: ast.AST) -> str | None:
    """"a.b" for `importlib.import_module("a.b")` (or `__import__`) with a literal name."""
    if not (isinstance(node, ast.Call) and _calls_import_module(node) and node.args):
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """module -> the application modules it imports (anywhere in its body).

    An import counts as a dependency on the deepest module it names; the enclosing
    packages' `__init__` modules, which Python also runs, are not counted.
    """
    files = {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for name in imported_names(tree, module, path.name == "__init__.py"):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None when the graph is acyclic."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for start in sorted(graph):
        if colour[start] != white:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        colour[start] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            state = colour.get(nxt, black)  # a name outside the graph leads nowhere
            if state == grey:
                return [*path[path.index(nxt) :], nxt]
            if state == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"x"}}) is None


def test_graph_counts_imports_inside_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .. import leaf\n")
    (pkg / "leaf.py").write_text("X = 1\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import g\n    import pkg.leaf\n")
    (pkg / "b.py").write_text("import importlib\nimportlib.import_module('pkg.leaf')\n")
    (pkg / "sub" / "g.py").write_text("def h():\n    from ..a import f\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.sub.g", "pkg.leaf"}
    assert graph["pkg.sub"] == {"pkg.leaf"}
    assert graph["pkg.sub.g"] == {"pkg.a"}
    assert graph["pkg.b"] == {"pkg.leaf"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.g", "pkg.a"]


def test_application_modules_are_imported_by_name() -> None:
    """A module name computed at run time would hide an edge from the graph below."""
    hidden = [
        f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if _calls_import_module(node) and _literal_import(node) is None
    ]
    assert hidden == [], f"imports by a computed name: {hidden}"


def test_application_packages_have_no_import_cycle() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert len(graph) > 50, "the packages were not found"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])

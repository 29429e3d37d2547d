"""The shape of the code holds: no import cycles, and no part reaches into another's private
module or name.

A *part* is a package under `receiver/` (`http`, `dashboard`, `delivery`, `upstream`, `store`,
`cli`, `sandbox`), the top-level `receiver` modules together, or `handlers`. A private module
(`_x.py`) or a private name (`_x`) belongs to its own package: another part may not import it.
Cycles are judged on module-level imports (what runs at import time); an import inside a
function is how a heavy dependency is deferred and cannot form an import-time cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

ROOTS = ("receiver", "handlers")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, tree: ast.Module, *, top_level_only: bool) -> Iterator[tuple[str, str]]:
    """(imported module, imported name or '') for each import in `tree`."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> Iterator[tuple[str, str]]:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, ""
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    if f"{base}.{alias.name}" in MODULES:
                        yield f"{base}.{alias.name}", ""
                    else:
                        yield base, alias.name
            elif isinstance(node, ast.If) and _is_type_checking(node):
                continue
            elif top_level_only:
                if isinstance(node, ast.If | ast.Try | ast.With):
                    yield from visit(node.body)
                    for extra in ("orelse", "finalbody", "handlers"):
                        for child in getattr(node, extra, []):
                            yield from visit(getattr(child, "body", [child]))
            else:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        yield from visit([child])
                    elif hasattr(child, "body") and isinstance(child.body, list):
                        yield from visit(child.body)

    yield from visit(tree.body)


def _part(module: str) -> str:
    pieces = module.split(".")
    if pieces[0] == "handlers":
        return "handlers"
    if len(pieces) >= 2 and (REPO / "receiver" / pieces[1]).is_dir():
        return f"receiver.{pieces[1]}"
    return "receiver"


def _trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _graph(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        targets = {target for target, _ in _imports(name, tree, top_level_only=True)}
        graph[name] = {target for target in targets if target in MODULES and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _private_reaches(trees: dict[str, ast.Module]) -> list[str]:
    found = []
    for name, tree in trees.items():
        for target, symbol in _imports(name, tree, top_level_only=False):
            if not target.startswith(ROOTS) or target not in MODULES:
                continue
            crosses = _part(target) != _part(name)
            private_module = any(piece.startswith("_") for piece in target.split(".")[1:])
            private_name = symbol.startswith("_") and not symbol.startswith("__")
            if crosses and (private_module or private_name):
                found.append(f"{name} imports {target}{'.' + symbol if symbol else ''}")
    return sorted(found)


def test_no_import_cycles() -> None:
    assert [] == _cycles(_graph(_trees()))


def test_no_part_imports_another_parts_private_module_or_name() -> None:
    assert [] == _private_reaches(_trees())


FOUNDATIONS = ("receiver.store", "receiver.upstream")
"""Parts the others build on: they must not know who uses them."""
USERS = ("receiver.http", "receiver.dashboard", "receiver.delivery", "receiver.cli")


def _upward(trees: dict[str, ast.Module]) -> list[str]:
    found = []
    for name, tree in trees.items():
        if _part(name) not in FOUNDATIONS:
            continue
        for target, _ in _imports(name, tree, top_level_only=False):
            if target in MODULES and _part(target) in USERS:
                found.append(f"{name} imports {target}")
    return sorted(found)


def test_the_store_and_the_upstream_client_import_none_of_their_users() -> None:
    assert [] == _upward(_trees())


def test_the_checks_can_fail() -> None:
    """Both checks on a small made-up graph, so a broken walk cannot pass vacuously."""
    assert [["a", "b"]] == _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    trees = _trees()
    assert len(trees) > 60  # every module was read
    graph = _graph(trees)
    assert "receiver.services" in graph["receiver.delivery.worker"]
    tree = ast.parse("from receiver.store._tasks import x\nfrom receiver.http.params import _y\n")
    fake = {"receiver.dashboard.views": tree}
    assert [
        "receiver.dashboard.views imports receiver.http.params._y",
        "receiver.dashboard.views imports receiver.store._tasks.x",
    ] == _private_reaches(fake)
    upward = {
        "receiver.store.outbox": ast.parse("from receiver.delivery.alerts import DEAD_KIND\n")
    }
    assert ["receiver.store.outbox imports receiver.delivery.alerts"] == _upward(upward)

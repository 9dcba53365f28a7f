"""No import circle in our five distributions (issue 16): each module can be read bottom-up.

A circle works in Python only as long as nobody reorders the imports, and it is usually
hidden behind an import inside a function; so every import counts here: at module level,
inside functions, and under ``if TYPE_CHECKING:``. The graph is read from the source with
``ast``, without importing anything. ``import a.b`` imports ``a.b``; ``from a import b``
imports ``a`` and ``a.b`` when that is a module; relative imports are resolved against the
importing module's package. A parent package that Python runs first (``a/__init__.py`` for
``a.b``) is not counted: it is how packages work, not a decision of the importing module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = (
    "packages/fastwan_core",
    "packages/fastwan_adapters",
    "apps/queue_worker",
    "apps/buffer_worker",
    "apps/generate_cli",
)


@attrs.frozen
class Edge:
    """``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int


def _modules() -> dict[str, Path]:
    """Every module of our distributions, by dotted name."""
    modules: dict[str, Path] = {}
    for distribution in DISTRIBUTIONS:
        src = ROOT / distribution / "src"
        for path in sorted(src.rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _package_of(name: str, path: Path) -> str:
    """The package a relative import in ``name`` starts from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imported(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The modules of ours that ``name`` imports, each with the line that imports it."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in modules:  # ``import a.b.Thing`` is not ours
                    target = target.rpartition(".")[0]
                if target:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target in modules:
                yield target, node.lineno
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    yield f"{target}.{alias.name}", node.lineno


def import_graph() -> dict[str, list[Edge]]:
    """Each module's imports of our modules (itself left out)."""
    modules = _modules()
    graph: dict[str, list[Edge]] = {}
    for name, path in modules.items():
        edges = {
            target: Edge(name, target, str(path.relative_to(ROOT)), line)
            for target, line in sorted(_imported(name, path, modules), key=lambda item: -item[1])
            if target != name
        }
        graph[name] = sorted(edges.values(), key=lambda edge: edge.target)
    return graph


def circles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One circle per strongly connected group of modules (Tarjan's algorithm, then a path);
    the test names the whole group too, since each of its modules leads to every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph[node]:
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle_in(graph, group) for group in sorted(groups, key=min)]


def _circle_in(graph: dict[str, list[Edge]], group: set[str]) -> list[Edge]:
    """The shortest circle through the group's first module (breadth first, within the group)."""
    start = min(group)
    came_by: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target not in group:
                    continue
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_by[path[0].source])
                    return path
                if edge.target not in came_by:
                    came_by[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"no circle found in the group {sorted(group)}")  # Tarjan says there is


def describe(circle: list[Edge]) -> str:
    names = " -> ".join([circle[0].source, *(edge.target for edge in circle)])
    lines = "\n".join(f"    {edge.path}:{edge.line} imports {edge.target}" for edge in circle)
    return f"  {names}\n{lines}"


def test_the_graph_sees_our_modules_and_their_imports() -> None:
    graph = import_graph()
    assert {"fastwan_core.wire", "fastwan_adapters.encoder", "queue_worker.routes"} <= set(graph)
    assert "buffer_worker.fleet.plan" in graph
    assert "fastwan_core" in {edge.target for edge in graph["queue_worker.routes"]}


def test_a_circle_is_found_and_named() -> None:
    """The check itself: a circle through a function-level import is found, with its lines."""
    graph = {
        "a": [Edge("a", "b", "a.py", 3)],
        "b": [Edge("b", "c", "b.py", 5)],
        "c": [Edge("c", "a", "c.py", 40)],
        "d": [Edge("d", "a", "d.py", 1)],
    }
    (circle,) = circles(graph)
    assert describe(circle) == (
        "  a -> b -> c -> a\n    a.py:3 imports b\n    b.py:5 imports c\n    c.py:40 imports a"
    )


def test_no_import_circle_in_our_distributions() -> None:
    graph = import_graph()
    found = circles(graph)
    assert not found, (
        "import circles (every import counts, at module level or inside a function; break each "
        "by moving what both sides need into a module below them):\n"
        + "\n".join(f"{describe(circle)}\n    in the group {_group_of(graph, circle)}" for circle in found)
    )


def _group_of(graph: dict[str, list[Edge]], circle: list[Edge]) -> str:
    """Every module that both reaches the circle and is reached from it."""
    start = circle[0].source

    def reached(begin: str, edges: dict[str, list[str]]) -> set[str]:
        seen, todo = {begin}, [begin]
        while todo:
            for following in edges.get(todo.pop(), []):
                if following not in seen:
                    seen.add(following)
                    todo.append(following)
        return seen

    forward = {name: [edge.target for edge in edges] for name, edges in graph.items()}
    backward: dict[str, list[str]] = {}
    for name, targets in forward.items():
        for target in targets:
            backward.setdefault(target, []).append(name)
    return ", ".join(sorted(reached(start, forward) & reached(start, backward)))


def test_relative_and_function_level_imports_are_resolved(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "a.py", "b.py", "sub/__init__.py", "sub/c.py"):
        (package / name).write_text("")
    (package / "sub" / "c.py").write_text(
        "from .. import a\nfrom ..b import thing\nfrom . import missing\n"
        "def f():\n    import pkg.sub\n    from pkg import sub as s\n"
    )
    modules = {"pkg": package / "__init__.py", "pkg.a": package / "a.py", "pkg.b": package / "b.py"}
    modules |= {"pkg.sub": package / "sub/__init__.py", "pkg.sub.c": package / "sub/c.py"}
    found = sorted(set(_imported("pkg.sub.c", modules["pkg.sub.c"], modules)))
    assert found == [
        ("pkg", 1),
        ("pkg", 6),
        ("pkg.a", 1),
        ("pkg.b", 2),
        ("pkg.sub", 3),
        ("pkg.sub", 5),
        ("pkg.sub", 6),
    ]

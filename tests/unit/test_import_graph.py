"""The package's import graph: no module imports itself through others, and the batch domain
does not import the engine (the engine builds on the batch domain, not the other way round).

Every ``from llm_stream... import`` counts, at the top of a module, inside a function or under
``TYPE_CHECKING``: a circle any of them closes is a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import llm_stream

PACKAGE = Path(llm_stream.__file__).parent


def _import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llm_stream"):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    target = target if target in modules else str(node.module)
                    if target in modules and target != name:
                        graph[name].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while (member := stack.pop()) != module:
                component.append(member)
            if component:
                circles.append(sorted([module, *component]))

    for module in graph:
        if module not in index:
            visit(module)
    return circles


def test_no_module_imports_itself_through_others() -> None:
    graph = _import_graph()
    assert len(graph) > 100  # the whole package was read
    assert _circles(graph) == []


def test_the_batch_domain_does_not_import_the_engine() -> None:
    graph = _import_graph()
    crossing = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("llm_stream.batch.")
        for target in targets
        if target.startswith("llm_stream.engine.")
    )
    assert crossing == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

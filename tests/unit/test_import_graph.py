"""The package's import graph: no module imports itself through others, and no folder imports
a peer or a folder above it (``LAYERS``, as docs/architecture.md draws them).

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


#: The package's folders (and top-level modules), lowest first: a folder imports only from
#: its own layer's modules inside itself and from layers below. Peers on one line do not
#: import each other (the engine builds on the batch domain, never the reverse).
LAYERS = (
    "_version errors network settings_files contracts",
    "settings protocols",
    "files",
    "batch",
    "ops",
    "kafka engine broker",
    "client runtime curation",
    "worker aggregator notifier gateway",
    "run_batch bench",
    "cli",
    "__init__ __main__",
)


def _layer_of() -> dict[str, int]:
    return {part: level for level, line in enumerate(LAYERS) for part in line.split()}


def _part(module: str) -> str:
    """The folder (or top-level module) a module belongs to: ``llm_stream.kafka.topics`` is in
    ``kafka``, ``llm_stream`` itself in ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _crossings(graph: dict[str, set[str]], layer_of: dict[str, int]) -> list[str]:
    """Imports of a peer or of a layer above, as ``module -> target``."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if _part(module) != _part(target) and layer_of[_part(target)] >= layer_of[_part(module)]
    )


def test_every_folder_has_a_layer() -> None:
    parts = {_part(module) for module in _import_graph()}
    assert parts == set(_layer_of())


def test_no_folder_imports_a_peer_or_a_layer_above() -> None:
    assert _crossings(_import_graph(), _layer_of()) == []


def test_the_layer_check_finds_an_upward_and_a_peer_import() -> None:
    graph = {"p.low.a": {"p.high.b"}, "p.high.b": {"p.low.a"}, "p.peer.c": {"p.high.b"}}
    layer_of = {"low": 0, "high": 1, "peer": 1}
    assert _crossings(graph, layer_of) == ["p.low.a -> p.high.b", "p.peer.c -> p.high.b"]


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

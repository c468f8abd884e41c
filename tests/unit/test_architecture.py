"""The package's shape, read from its source with ``ast`` (nothing is imported).

Every ``import`` counts, wherever it is: at module level, inside a function and under
``if TYPE_CHECKING:``, because an import moved into a function still makes the modules depend on
each other; it only hides the cycle from the interpreter.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "multiswarm"
#: Longest module, in lines (STYLE: small modules, one concern each).
MAX_LINES = 450
#: The node layer (processes hosting agents) and the components that must not import it: a
#: component is used by every process, the node layer only by workers.
NODE_LAYER = frozenset(
    {"multiswarm.agents", "multiswarm.placement", "multiswarm.supervisor", "multiswarm.worker"}
)
COMPONENTS = frozenset(
    {
        "multiswarm.breakers",
        "multiswarm.consensus",
        "multiswarm.coordinator",
        "multiswarm.messenger",
        "multiswarm.recovery",
        "multiswarm.registry",
        "multiswarm.resources",
        "multiswarm.services",
        "multiswarm.state",
        "multiswarm.tasks",
    }
)


def _module_names() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _imports(name: str, source: str, is_package: bool = False) -> set[str]:
    """The package modules module ``name`` imports. ``from multiswarm.x import y`` names the
    submodule ``multiswarm.x.y`` when there is one, else ``multiswarm.x``; the implicit import
    of parent packages is not counted."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in MODULES else module)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {
    name: _imports(name, path.read_text(), path.name == "__init__.py")
    for name, path in MODULES.items()
}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _is_cli(name: str) -> bool:
    return name.startswith("multiswarm.cli") or name == "multiswarm.__main__"


#: All the CLI may import from the package: the facade and its records (``multiswarm``,
#: ``api``, ``api_types``), the launcher's surface of the node layer (``node_api``), settings,
#: errors and URL redaction. Everything else is reached through these, so the components can
#: change behind them.
CLI_MAY_IMPORT = frozenset(
    {
        "multiswarm",
        "multiswarm.api",
        "multiswarm.api_types",
        "multiswarm.node_api",
        "multiswarm.config",
        "multiswarm.errors",
        "multiswarm.urls",
        # log formats and set-up, no component: read without the node layer, so `run
        # worker` starts without importing every role (decision 55)
        "multiswarm.logs",
        # the agents' fork server, started before the CLI imports the rest (decision 68)
        "multiswarm.agent_start",
    }
)


def _cli_reaches_past_the_facade(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    return {
        name: sorted(m for m in deps if not _is_cli(m) and m not in CLI_MAY_IMPORT)
        for name, deps in graph.items()
        if _is_cli(name) and any(not _is_cli(m) and m not in CLI_MAY_IMPORT for m in deps)
    }


def _lines(name: str) -> int:
    return len(MODULES[name].read_text().splitlines())


def test_the_walk_sees_hidden_imports_and_finds_cycles() -> None:
    # a walk that missed these would pass the cycle test without looking
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import keys\n"
        "if TYPE_CHECKING:\n"
        "    from multiswarm.state import SwarmStateManager\n"
        "def f():\n"
        "    import multiswarm.errors\n"
        "    from .kernels import scheduling\n"
        "    from multiswarm.config import Settings\n"
    )
    assert _imports("multiswarm.recovery", source) == {
        "multiswarm.keys",
        "multiswarm.state",
        "multiswarm.errors",
        "multiswarm.kernels.scheduling",
        "multiswarm.config",
    }
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_only_the_cli_imports_the_cli() -> None:
    wrong = {
        name: sorted(m for m in deps if _is_cli(m))
        for name, deps in GRAPH.items()
        if not _is_cli(name)
    }
    assert {name: deps for name, deps in wrong.items() if deps} == {}


def test_components_do_not_import_the_node_layer() -> None:
    wrong = {name: sorted(GRAPH[name] & NODE_LAYER) for name in COMPONENTS}
    assert {name: deps for name, deps in wrong.items() if deps} == {}


def test_the_cli_imports_only_the_facade_surface() -> None:
    assert _cli_reaches_past_the_facade(GRAPH) == {}
    # the rule can fail: a CLI module importing a component is caught
    assert _cli_reaches_past_the_facade({"multiswarm.cli_ops": {"multiswarm.breakers"}}) == {
        "multiswarm.cli_ops": ["multiswarm.breakers"]
    }


def test_every_module_is_within_the_limit() -> None:
    assert {name: _lines(name) for name in MODULES if _lines(name) > MAX_LINES} == {}

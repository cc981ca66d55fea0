"""The evaluation modules import each other one way: no circle, counting imports inside functions
and under TYPE_CHECKING."""
from __future__ import annotations

import ast
from pathlib import Path

import advkit.evaluation

PACKAGE = Path(advkit.evaluation.__file__).parent


def sibling_imports(path: Path) -> set[str]:
    """The evaluation modules ``path`` imports (``from .x import``, ``from . import x``), wherever the import stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
    return found


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":  # on the current path: back to it is a circle
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep, [*path, dep])):
                return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def test_the_cycle_finder_finds_one():
    assert circle({"report": {"html"}, "html": {"markdown"}, "markdown": {"report"}}) == \
        ["html", "markdown", "report", "html"]
    assert circle({"report": {"html", "markdown"}, "html": {"tables"}, "markdown": {"tables"}}) is None


def test_evaluation_modules_import_one_way():
    graph = {p.stem: sibling_imports(p) - {"__init__"} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert graph["report"] >= {"html", "markdown", "tables"} and graph["html"] >= {"tables"}
    assert circle(graph) is None, circle(graph)
    assert not (graph["html"] | graph["markdown"] | graph["tables"]) & {"report", "html", "markdown"}

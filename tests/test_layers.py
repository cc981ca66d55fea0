"""The package's layers, read from the source (docs/ARCHITECTURE.md, Layout): every module of advkit belongs
to a layer of :data:`LAYERS`, imports nothing of a higher layer, and no import circle joins two modules or two
parts. Imports count wherever they stand (inside functions, under TYPE_CHECKING). attacks and gan meet only
in core, except attacks/advgan.py, the one module of attacks that imports gan, loaded lazily."""
from __future__ import annotations

import ast
from pathlib import Path

import advkit

ROOT = Path(advkit.__file__).parent
PACKAGE = "advkit"

#: The layers, lowest first: a part (a module, or a package with its modules) -> its rank. A module belongs
#: to the longest part its name starts with; ``advkit`` itself (the package facade: ``import advkit`` gives
#: the API) and ``advkit.__main__`` are parts of their own name only.
LAYERS: dict[str, int] = {
    "advkit.core": 0,
    # shared utilities
    "advkit.validation": 1, "advkit.devices": 1, "advkit.distributed": 1, "advkit.checkpoints": 1,
    "advkit.progress": 1, "advkit.batches": 1, "advkit.files": 1, "advkit.rng": 1, "advkit.safe_pickle": 1,
    "advkit.outputs": 1, "advkit.acceleration": 1, "advkit.figures": 1,
    "advkit.data": 2, "advkit.models": 2,
    "advkit.train": 3,
    "advkit.gan": 4,
    "advkit.attacks": 5, "advkit.smoothing": 5,
    "advkit.defenses": 6, "advkit.evaluation": 6,
    PACKAGE: 7,
    "advkit.app": 8,
    "advkit.__main__": 9,
}
#: The layer of the shared utilities: small modules that every layer uses and that may use each other
#: (without a circle). In every other layer the parts are peers that do not import each other.
SHARED = 1
#: The one module of attacks/ that imports gan/: AdvGAN trains its generator with the GAN trainer.
GATEWAY = "advkit.attacks.advgan"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The advkit modules ``path`` imports, wherever the import stands (functions, TYPE_CHECKING):
    ``from x import y`` imports the module ``x.y`` where there is one, else ``x``; a string that is a submodule's
    name (``importlib.import_module`` loads it, as the dispatcher loads each subcommand) imports that module."""
    name = module_name(path)
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES.keys() - {PACKAGE}:
            found.add(node.value)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
    return found


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def part(module: str) -> str | None:
    """The part of :data:`LAYERS` that ``module`` belongs to, or None."""
    if module in (PACKAGE, f"{PACKAGE}.__main__"):
        return module
    owners = [p for p in LAYERS if p not in (PACKAGE, f"{PACKAGE}.__main__") and
              (module == p or module.startswith(p + "."))]
    return max(owners, key=len, default=None)


def rank(module: str) -> int:
    return LAYERS[part(module)]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for every import of a module ``b`` of a higher layer than the importing ``a``'s."""
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if rank(b) > rank(a))


def peer_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for every import between two parts of one layer (the shared utilities aside)."""
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                  if rank(a) == rank(b) != SHARED and part(a) != part(b))


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (name -> names it imports), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":  # on the current path: back to it is a circle
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep, [*path, dep])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def between_parts(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``graph`` with each module replaced by its part, imports within a part left out."""
    parts: dict[str, set[str]] = {}
    for a, deps in graph.items():
        parts.setdefault(part(a), set()).update(part(b) for b in deps if part(b) != part(a))
    return parts


def reachable(start: str, graph: dict[str, set[str]] = GRAPH) -> set[str]:
    """Every advkit module ``start`` imports, directly or through others (packages' __init__ included)."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        for dep in graph.get(module, ()):
            parts = dep.split(".")
            for k in range(2, len(parts) + 1):  # importing a.b.c runs a.b's __init__ too
                prefix = ".".join(parts[:k])
                if prefix in GRAPH and prefix not in seen:
                    seen.add(prefix)
                    todo.append(prefix)
    return seen


def in_package(modules: set[str], package: str) -> set[str]:
    return {m for m in modules if m == package or m.startswith(package + ".")}


def test_every_module_belongs_to_a_layer_and_every_part_exists():
    assert sorted(m for m in MODULES if part(m) is None) == []
    assert sorted(p for p in LAYERS if p not in MODULES) == []


def test_no_module_imports_a_higher_layer():
    assert upward_imports(GRAPH) == []


def test_the_parts_of_a_layer_do_not_import_each_other():
    """Peers such as defenses and evaluation, or data and models, stand beside each other."""
    assert peer_imports(GRAPH) == []


def test_no_import_circle_between_modules_or_between_parts():
    assert circle(GRAPH) is None
    assert circle(between_parts(GRAPH)) is None


def test_the_rules_catch_what_they_forbid():
    """Each rule fails on the graph it forbids (evaluation importing defenses, a CLI importing the dispatcher
    above it, a circle through two modules or two parts)."""
    assert upward_imports({"advkit.data.corruptions": {"advkit.attacks.generate"}}) == [
        "advkit.data.corruptions -> advkit.attacks.generate"]
    assert upward_imports({"advkit.evaluation.demo": {"advkit.app.cli"}}) == [
        "advkit.evaluation.demo -> advkit.app.cli"]
    assert peer_imports({"advkit.evaluation.evaluate": {"advkit.defenses.measure"}, "advkit.checkpoints":
                         {"advkit.files"}}) == ["advkit.evaluation.evaluate -> advkit.defenses.measure"]
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert circle(between_parts({"advkit.gan.report": {"advkit.train"}, "advkit.train": {"advkit.gan.losses"}})) == [
        "advkit.gan", "advkit.train", "advkit.gan"]
    assert part("advkit.not_placed") is None and part("advkit") == "advkit" and part("advkit.app.cli") == "advkit.app"


def test_the_import_reader_sees_relative_imports():
    assert "advkit.core" in reachable("advkit.attacks.pgd")
    assert "advkit.attacks.base" in reachable("advkit.evaluation.evaluate")
    assert "advkit.safe_pickle" in GRAPH["advkit.data"] and PACKAGE not in GRAPH["advkit.data"]  # from .. import x
    assert "advkit.attacks.advgan" in GRAPH["advkit.attacks"]  # inside a function
    assert "advkit.app.gan_cli" in GRAPH["advkit.app.cli"]  # by name, through importlib


def test_attacks_and_gan_meet_only_in_core_but_for_advgan():
    for module in in_package(set(GRAPH), "advkit.gan"):
        assert not in_package(reachable(module), "advkit.attacks"), module
    assert in_package(reachable(GATEWAY), "advkit.gan")  # the exception is real, and named here
    without_gateway = {m: {d for d in deps if not in_package({d}, GATEWAY)} for m, deps in GRAPH.items()}
    for module in in_package(set(GRAPH), "advkit.attacks") - {GATEWAY}:
        assert not in_package(reachable(module, without_gateway), "advkit.gan"), module


def test_the_attacks_package_imports_advgan_only_when_asked():
    """Imports at the top level of attacks/__init__.py run with the package: none may load the gateway
    (its lazy ``__getattr__`` does, inside a function)."""
    init = ROOT / "attacks" / "__init__.py"
    top = [node for node in ast.parse(init.read_text(encoding="utf-8")).body
           if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert top and not any(getattr(node, "module", None) == "advgan" for node in top)
    assert "advgan" in {n.module for n in ast.walk(ast.parse(init.read_text(encoding="utf-8")))
                        if isinstance(n, ast.ImportFrom)}


def test_core_stands_on_nothing_of_advkit_and_attacks_never_reach_evaluation():
    for module in in_package(set(GRAPH), "advkit.core"):
        assert reachable(module) <= in_package(set(GRAPH), "advkit.core"), module
    for module in in_package(set(GRAPH), "advkit.attacks"):
        assert not in_package(reachable(module), "advkit.evaluation"), module


def test_the_report_renderers_import_one_way():
    """Inside evaluation/: report -> html/markdown -> page -> tables (docs/ARCHITECTURE.md, Layout): the
    renderers never import the Report or each other."""
    def siblings(name: str) -> set[str]:
        return {d.rsplit(".", 1)[1] for d in GRAPH[f"advkit.evaluation.{name}"] if d.startswith("advkit.evaluation.")}

    assert siblings("report") >= {"html", "markdown", "page"} and siblings("page") >= {"tables"}
    assert not (siblings("html") | siblings("markdown") | siblings("page") | siblings("tables")) & {
        "report", "html", "markdown"}

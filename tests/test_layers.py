"""The package's layers, read from the source: attacks and gan meet only in core (except
attacks/advgan.py, the one module of attacks that imports gan, loaded lazily), core stands on
nothing of advkit's, and evaluation is never imported by attacks (docs/ARCHITECTURE.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import advkit

ROOT = Path(advkit.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The advkit modules ``path`` imports, wherever the import stands (functions, TYPE_CHECKING)."""
    name = module_name(path)
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("advkit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("advkit"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
    return found


GRAPH = {module_name(p): imports(p) for p in ROOT.rglob("*.py")}
#: The one module of attacks/ that imports gan/: AdvGAN trains its generator with the GAN trainer.
GATEWAY = "advkit.attacks.advgan"


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


def test_the_import_reader_sees_relative_imports():
    assert "advkit.core" in reachable("advkit.attacks.pgd")
    assert "advkit.attacks.base" in reachable("advkit.evaluation.evaluate")


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

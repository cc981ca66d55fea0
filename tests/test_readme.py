"""The README: the two commands CI parses, Python examples that call the real API, and a first
example that prints what its comments claim."""
import ast
import inspect
import math
import re
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_the_commands_ci_runs_and_the_architecture_it_cites():
    # the same patterns as .ci/run
    installs = re.findall(r"^    \$ (pip install [^&]*[^& ]).*$", README, flags=re.MULTILINE)
    tests = re.findall(r"^    \$ (python -m pytest.*)$", README, flags=re.MULTILINE)
    assert installs[:1] == ['pip install ".[dev]"'] and tests[:1] == ["python -m pytest -n 2 -q"]
    assert "    $ pip install \".[dev]\" && advkit demo\n" in README
    assert (ROOT / "docs" / "ARCHITECTURE.md").is_file() and "docs/ARCHITECTURE.md" in README
    assert len(BLOCKS) == 4


def _api_calls(source: str) -> list[tuple[str, object, list[str]]]:
    """``(text, callable, keyword names)`` of every call in ``source`` that resolves to advkit's API:
    names imported from advkit, attribute chains on them, and methods of variables assigned from
    a class or from a function with a return annotation."""
    known: dict[str, object] = {}
    instances: set[str] = set()  # variables holding an instance of the class recorded for them

    def resolve(node: ast.AST) -> object | None:
        if isinstance(node, ast.Name):
            return known.get(node.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in instances:
            return None  # an instance called (an attack): what it returns is not an API object
        if isinstance(node, ast.Attribute):
            owner = resolve(node.value)
            return None if owner is None else getattr(owner, node.attr, None)
        if isinstance(node, ast.Call):
            func = resolve(node.func)
            if inspect.isclass(func):
                return func
            if callable(func):
                return typing.get_type_hints(func).get("return")
        return None

    calls = []
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Import):
            known.update({a.asname or a.name: __import__(a.name) for a in stmt.names if a.name.startswith("advkit")})
        elif isinstance(stmt, ast.ImportFrom) and stmt.module.startswith("advkit"):
            module = __import__(stmt.module, fromlist=["_"])
            known.update({a.asname or a.name: getattr(module, a.name) for a in stmt.names})
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call):
                func = resolve(node.func)
                if isinstance(node.func, ast.Name) and node.func.id in instances:
                    func = func.__call__ if inspect.isclass(func) else None
                if func is not None and callable(func):
                    calls.append((ast.unparse(node), func, [k.arg for k in node.keywords if k.arg]))
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            value = resolve(stmt.value)
            if value is not None:
                known[stmt.targets[0].id] = value
                instances.add(stmt.targets[0].id)
    return calls


def test_readme_examples_call_the_real_api():
    """Every advkit function, class and method the examples call exists and takes the keywords they pass."""
    calls = _api_calls("\n".join(BLOCKS))
    called = {text.split("(")[0] for text, _, _ in calls}
    for name in ("advkit.train.fit", "advkit.attacks.PGD", "atk", "GANTrainer", "trainer.fit", "trainer.sample",
                 "advkit.evaluate", "report.table", "report.save"):
        assert name in called, f"{name} not resolved: the README or this test's resolver drifted"
    for text, func, keywords in calls:
        target = func.__init__ if inspect.isclass(func) else func
        params = inspect.signature(target).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            assert set(keywords) <= set(params), f"{text}: {sorted(set(keywords) - set(params))} not accepted"


@pytest.mark.slow  # PGD-40 on 500 digits
def test_first_example_prints_what_it_claims(trained_cnn, monkeypatch, capsys):
    """The first example runs as written, in this process, and prints each claimed accuracy within three
    binomial standard deviations (1,000 test digits for the clean accuracy, 500 for PGD). Its training
    call is the recipe of the shared ``trained_cnn`` to the letter (shared_models.train_smallcnn: a
    SmallCNN initialised after ``torch.manual_seed(0)``, the 4,000 mnist5k training digits, 8 epochs,
    seed 0; checked here), so that call gets the session's trained weights instead of training the
    same model again."""
    import torch

    import advkit

    calls = []

    def fit(model, data, **options):
        calls.append(options)
        assert type(model) is advkit.models.SmallCNN and len(data) == 4000 and options == {"epochs": 8, "seed": 0}, \
            "the README trains another model than shared_models.train_smallcnn: train it here again"
        with torch.random.fork_rng():
            torch.manual_seed(0)
            init = advkit.models.SmallCNN()
        assert all(torch.equal(a, b) for a, b in zip(init.state_dict().values(), model.state_dict().values(),
                                                       strict=True)), "the README's model starts from other weights"
        model.load_state_dict(trained_cnn.state_dict())
        return []

    monkeypatch.setattr(advkit.train, "fit", fit)
    with torch.random.fork_rng():
        exec(compile(BLOCKS[0], "README.md", "exec"), {})
    assert len(calls) == 1
    out = capsys.readouterr().out
    printed = [float(v) / 100 for v in re.findall(r": (\d+\.\d)%$", out, flags=re.MULTILINE)]
    claimed = [float(v) / 100 for v in re.findall(r"# about (\d+(?:\.\d)?)%", BLOCKS[0])]
    assert len(printed) == len(claimed) == 2, out
    for value, claim, n in zip(printed, claimed, (1000, 500), strict=True):
        assert abs(value - claim) <= 3 * math.sqrt(claim * (1 - claim) / n), (value, claim)


"""Building attacks by registry name with evaluation defaults, and describing them for reports."""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

#: The eps attacks are built with; every call of the evaluation passes the grid's eps instead.
BUILD_EPS = 8 / 255
#: Evaluation budgets for attacks built by name (the issue's PGD-40; others keep their defaults).
NAME_DEFAULTS: dict[str, dict[str, Any]] = {"pgd": {"steps": 40}}


def by_name(cls: type, key: str, model: nn.Module, norm: str, **overrides: Any) -> Any:
    """``cls(model, BUILD_EPS, norm=norm)`` with the evaluation defaults for ``key``; keyword arguments that
    neither the class nor its bases name are left out (attacks differ in what they accept)."""
    named = {name for klass in cls.__mro__ if "__init__" in vars(klass)
             for name in inspect.signature(vars(klass)["__init__"]).parameters}
    wanted = {"norm": norm, **NAME_DEFAULTS.get(key, {}), **overrides}
    return cls(model, BUILD_EPS, **{k: v for k, v in wanted.items() if k in named})


def describe(attack: Any) -> Any:
    """An attack's settings for the report: its repr plus its step budget (its own eps is replaced
    by the grid's at each point); an ensemble lists its components."""
    if hasattr(attack, "describe"):
        return attack.describe()
    extra = [f"{k}={getattr(attack, k)}" for k in ("steps", "restarts", "n_queries") if isinstance(getattr(attack, k, None), int)]
    return " ".join([repr(attack), *extra])

"""Building attacks by registry name, and describing what an attack ran for reports."""
from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..attacks import Attack

#: The eps attacks are built with; every call of the evaluation passes the grid's eps instead.
BUILD_EPS = 8 / 255


def accepts(cls: type, name: str) -> bool:
    """Whether ``cls``'s constructor (or a base class's) takes the keyword argument ``name``."""
    return any(name in inspect.signature(vars(klass)["__init__"]).parameters
               for klass in cls.__mro__ if "__init__" in vars(klass))


def by_name(cls: type, key: str, model: nn.Module, norm: str, **overrides: Any) -> Any:
    """``cls(model, BUILD_EPS, norm=norm, **overrides)``; keyword arguments the class does not take
    are left out (attacks differ in what they accept). ``key`` is the registry name, for messages."""
    wanted = {"norm": norm, **overrides}
    return cls(model, BUILD_EPS, **{k: v for k, v in wanted.items() if accepts(cls, k)})


def describe(attack: Any, eps: Sequence[float] | None = None) -> Any:
    """What ``attack`` ran, for the report: ``"PGD-40, alpha 2.5·eps/40, eps ∈ {0.1, 0.2}; PGD(...)"``
    (steps, step-size rule, the grid's eps in place of the eps it was built with, then its other
    settings). An attack with its own ``describe`` (an ensemble) describes itself."""
    if hasattr(attack, "describe"):
        return attack.describe()
    kind = type(attack).__name__
    steps = getattr(attack, "steps", None)
    parts = [f"{kind}-{steps}" if isinstance(steps, int) else kind]
    alpha = getattr(attack, "alpha", None)
    rule = getattr(attack, "derived", {}).get("alpha")
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        parts.append(f"alpha {alpha:g}")
    elif rule is not None and isinstance(steps, int):
        text = attack.rule("alpha") if isinstance(attack, Attack) else rule[0]
        parts.append("alpha " + text.replace("steps", str(steps)))
    restarts = getattr(attack, "restarts", None)
    if isinstance(restarts, int) and restarts > 1:
        parts.append(f"{restarts} restarts")
    queries = getattr(attack, "n_queries", None)
    if isinstance(queries, int):
        parts.append(f"{queries} queries")
    if eps is not None:
        parts.append("eps ∈ {" + ", ".join(f"{e:g}" for e in eps if e > 0) + "}")
    if isinstance(attack, Attack):
        settings = f"{kind}({attack.settings_text()})"
    else:  # a wrapped attack: its repr without the eps it was built with
        settings = re.sub(r"\beps=[^,()]*(, )?", "", repr(attack)).replace(", )", ")")
    return ", ".join(parts) + "; " + settings

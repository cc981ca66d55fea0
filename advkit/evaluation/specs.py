"""Turning what the user passes as ``attacks`` into attack objects, one set per model.

An entry is a name (``"fgsm"``, ``"pgd"``, any key of :data:`advkit.attacks.ATTACKS`, or
``"autoattack"``), an attack object (ours or a torchattacks one, wrapped with
:func:`advkit.attacks.from_torchattacks`), or a factory ``model -> attack`` (what to pass when
one report covers several models, since an attack object is bound to its model).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from torch import nn

from ..attacks import ATTACKS, from_torchattacks
from ..attacks.adapter import is_torchattacks
from ..attacks.autoattack import AUTOATTACK, build_autoattack
from .construct import by_name

def valid_names() -> list[str]:
    """Every attack name ``evaluate`` accepts right now (the registry grows as attacks land)."""
    return sorted(ATTACKS) + [AUTOATTACK]


@dataclass
class AttackSpec:
    """A named recipe for an attack: ``build(model, norm, num_classes)`` gives a fresh object."""

    name: str
    build: Callable[[nn.Module, str, int], Any]


def resolve(attacks: Iterable[Any] | Mapping[str, Any]) -> list[AttackSpec]:
    """Validate ``attacks`` (a list, or a dict name -> entry) before any work; names must be unique."""
    items = list(attacks.items()) if isinstance(attacks, Mapping) else [(None, a) for a in attacks]
    if not items:
        raise ValueError(f"attacks must name at least one attack; valid names: {', '.join(valid_names())}")
    specs = [_spec(label, entry) for label, entry in items]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or "worst" in names:
        raise ValueError(f"attacks need distinct names other than 'worst'; repeated: {duplicates or ['worst']} "
                         "(pass a dict {name: attack} to name them)")
    return specs


def _spec(label: str | None, entry: Any) -> AttackSpec:
    if isinstance(entry, str):
        key = entry.lower()
        if key == AUTOATTACK:
            return AttackSpec(label or key, build_autoattack)
        if key not in ATTACKS:
            raise ValueError(f"unknown attack {entry!r}; valid names: {', '.join(valid_names())}")
        return AttackSpec(label or key, lambda model, norm, _c, cls=ATTACKS[key], key=key: by_name(cls, key, model, norm))
    if is_torchattacks(entry):
        entry = from_torchattacks(entry)
    if hasattr(entry, "run"):
        return AttackSpec(label or type(entry).__name__.lower(), lambda model, _n, _c, obj=entry: bound(obj, model))
    if callable(entry):
        return AttackSpec(label or getattr(entry, "__name__", "attack"), lambda model, _n, _c, f=entry: _built(f, model))
    raise TypeError(f"attacks entries must be names, attack objects or callables model -> attack; got {type(entry).__name__}")


def bound(attack: Any, model: nn.Module) -> Any:
    """``attack`` if it is bound to ``model``; an attack object bound to another model is an error
    (give a name or a factory for multi-model reports)."""
    if getattr(attack, "model", model) is not model:
        raise ValueError(f"attack {attack!r} is bound to another model; for several models pass attack "
                         "names or factories (callables model -> attack)")
    return attack


def _built(factory: Callable[[nn.Module], Any], model: nn.Module) -> Any:
    attack = factory(model)
    if is_torchattacks(attack):
        attack = from_torchattacks(attack)
    if not hasattr(attack, "run"):
        raise TypeError(f"an attack factory must return an attack object, got {type(attack).__name__}")
    return bound(attack, model)


def stronger(attack: Any) -> Any | None:
    """A copy of ``attack`` with twice the steps, or None when it has no ``steps`` to raise
    (single-step attacks, wrapped torchattacks objects, ensembles)."""
    if not isinstance(getattr(attack, "steps", None), int):
        return None
    more = copy.copy(attack)
    more.steps = attack.steps * 2
    return more


def check_norm(name: str, attack: Any, norm: str) -> Any:
    """``attack`` itself, once its threat model is the evaluation's: a bounded attack in another
    norm would be reported under the wrong one (a factory ``model -> attack`` must pass ``norm``)."""
    own, eps = getattr(attack, "norm", None), getattr(attack, "eps", 0.0)
    if own is not None and own != norm and not (isinstance(eps, float) and math.isinf(eps)):
        raise ValueError(f"attack {name!r} works in norm {own!r} but the evaluation's norm is {norm!r}; "
                         f"build it with norm={norm!r}")
    return attack


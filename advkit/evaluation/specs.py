"""Turning what the user passes as ``attacks`` into attack objects, one set per model.

An entry is a name (``"fgsm"``, ``"pgd"``, any key of :data:`advkit.attacks.ATTACKS`, or
``"autoattack"``,
or ``"autoattack-rand"`` for randomized models), optionally with a step count for attacks that take
``steps`` (``"pgd-40"``,
``"apgd-100"``; a bare ``"pgd"`` means PGD's own default), an attack object (ours or a torchattacks one, wrapped with
:func:`advkit.attacks.from_torchattacks`), or a factory ``model -> attack`` (what to pass when
one report covers several models, since an attack object is bound to its model).
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from ..attacks import ATTACKS, from_torchattacks
from ..attacks.adapter import is_torchattacks
from ..attacks.autoattack import AUTOATTACK, AUTOATTACK_RAND, build_autoattack
from ..attacks.capabilities import capability
from .construct import accepts, by_name

#: The attacks of ``evaluate``, ``advkit evaluate``, ``advkit defend`` and the demo when none are given.
DEFAULT_ATTACKS: tuple[str, ...] = ("fgsm", "apgd")
#: A registry name with a step count: "pgd-40", "apgd-t-100".
_WITH_STEPS = re.compile(r"^(?P<base>.+)-(?P<steps>\d+)$")


def with_steps(names: Iterable[str], steps: int | None) -> list[str]:
    """``names`` with ``steps`` set on those whose attack takes a step count (``("fgsm", "apgd")``, 10 ->
    ``["fgsm", "apgd-10"]``); ``steps=None`` leaves them as they are."""
    if steps is None:
        return list(names)
    return [f"{base}-{steps}" if base in ATTACKS and accepts(ATTACKS[base], "steps") else name
            for name, (base, _) in ((name, parse_name(name)) for name in names)]


def valid_names() -> list[str]:
    """Every attack name ``evaluate`` accepts right now (the registry grows as attacks land); those
    that take ``steps`` also accept a step count, ``"pgd-40"``."""
    return sorted(ATTACKS) + [AUTOATTACK, AUTOATTACK_RAND]


def parse_name(entry: str) -> tuple[str, int | None]:
    """``"pgd-40"`` -> ``("pgd", 40)``; ``"pgd"`` -> ``("pgd", None)`` (the class's default steps).
    Unknown names and step counts on attacks without ``steps`` are a ValueError listing valid names."""
    key = entry.strip().lower()
    if key in ATTACKS or key in (AUTOATTACK, AUTOATTACK_RAND):
        return key, None
    match = _WITH_STEPS.match(key)
    if match and match["base"] in ATTACKS:
        base, steps = match["base"], int(match["steps"])
        if not accepts(ATTACKS[base], "steps"):
            raise ValueError(f"attack {entry!r}: {base!r} has no step count; use {base!r}")
        if steps < 1:
            raise ValueError(f"attack {entry!r}: the step count must be >= 1")
        return base, steps
    raise ValueError(f"unknown attack {entry!r}; valid names: {', '.join(valid_names())} "
                     "(those with steps also as name-STEPS, e.g. 'pgd-40')")


@dataclass
class AttackSpec:
    """A named recipe for an attack: ``build(model, norm, num_classes)`` gives a fresh object."""

    name: str
    build: Callable[[nn.Module, str, int], Any]


def resolve(attacks: Iterable[Any] | Mapping[str, Any]) -> list[AttackSpec]:
    """Validate ``attacks`` (a list, or a dict name -> entry) before any work; names must be unique."""
    if isinstance(attacks, str) or not isinstance(attacks, (Mapping, Iterable)):
        attacks = [attacks]  # one attack: "pgd", an attack object or a factory
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
    if label is not None and not isinstance(label, str):
        raise TypeError(f"attacks: dict keys name the attacks and must be strings, got {label!r}")
    if isinstance(entry, str):
        key, steps = parse_name(entry)
        name = label or entry.strip().lower()
        if key == AUTOATTACK:
            return AttackSpec(name, build_autoattack)
        if key == AUTOATTACK_RAND:
            return AttackSpec(name, lambda model, norm, classes: build_autoattack(model, norm, classes, "rand"))
        settings = {} if steps is None else {"steps": steps}
        return AttackSpec(name, lambda model, norm, _c, cls=ATTACKS[key], key=key:
                          by_name(cls, key, model, norm, **settings))
    if is_torchattacks(entry):
        entry = from_torchattacks(entry)
    if hasattr(entry, "run"):
        return AttackSpec(label or type(entry).__name__.lower(), lambda model, _n, _c, obj=entry: bound(obj, model))
    if callable(entry):
        return AttackSpec(label or getattr(entry, "__name__", "attack"),
                          lambda model, _n, _c, f=entry: _built(f, model))
    raise TypeError("attacks entries must be names, attack objects or callables model -> attack; "
                    f"got {type(entry).__name__}")


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


def with_amp(attack: Any, amp: bool) -> Any:
    """``attack`` itself, or with ``amp`` a copy whose forward passes run under bf16 autocast on CUDA
    (its ensemble members too); the caller's object is left as it is."""
    if not amp or not hasattr(attack, "amp"):
        return attack
    fast = copy.copy(attack)
    fast.amp = True
    if hasattr(attack, "components"):
        fast.components = [replace(part, attack=with_amp(part.attack, True)) for part in attack.components]
    return fast


def with_progress(attack: Any, progress: bool) -> Any:
    """``attack`` itself, or without ``progress`` a copy whose progress bars stay off (Square's, CW's,
    an AutoAttack's members'); the caller's object is left as it is."""
    if progress or not getattr(attack, "progress", False):
        return attack
    quiet = copy.copy(attack)
    quiet.progress = False
    return quiet


def check_norm(name: str, attack: Any, norm: str) -> Any:
    """``attack`` itself, once its threat model is the evaluation's: a bounded attack in another
    norm would be reported under the wrong one (a factory ``model -> attack`` must pass ``norm``,
    and its attack's class must support it: its ``norms``)."""
    own, eps = getattr(attack, "norm", None), getattr(attack, "eps", 0.0)
    if own is not None and own != norm and not (isinstance(eps, float) and math.isinf(eps)):
        supported = capability(attack, "norms")
        advice = (f"build it with norm={norm!r}" if norm in supported else
                  f"{type(attack).__name__} works under {', '.join(map(repr, supported))} only: choose another attack")
        raise ValueError(f"attack {name!r} works in norm {own!r} but the evaluation's norm is {norm!r}; {advice}")
    return attack


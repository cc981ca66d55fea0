"""What an attack object can do, read from the capabilities its class declares (:class:`Attack`'s
``norms``, ``losses``, ``targets``, ``warm_starts``, ``uses_gradients``, ``per_sample``,
``needs_training``, ``minimum_norm``, ``label_only``, ``transfer``), never guessed from the name it is reported
under or from its exact type.

``evaluate`` takes any object with ``run`` (:class:`~advkit.attacks.AttackLike`); one that does not
subclass :class:`Attack` has the base class's capabilities.
"""
from __future__ import annotations

from typing import Any

from .base import Attack

#: The capabilities every attack declares, as class attributes of :class:`Attack`.
CAPABILITIES = ("norms", "losses", "targets", "warm_starts", "uses_gradients", "per_sample", "needs_training",
                "minimum_norm", "label_only", "transfer")


def capability(attack: Any, name: str) -> Any:
    """``attack``'s capability ``name`` (one of :data:`CAPABILITIES`): its own, or the base class's
    for an object that does not declare it."""
    if name not in CAPABILITIES:
        raise ValueError(f"unknown capability {name!r}; the capabilities: {', '.join(CAPABILITIES)}")
    return getattr(attack, name, getattr(Attack, name))


def members(attack: Any) -> list[Any]:
    """The attacks whose searches make ``attack``'s results: an ensemble's members (its ``components``,
    each with an ``attack``, as :class:`~advkit.attacks.AutoAttack` has), recursively; else ``attack`` alone."""
    parts = getattr(attack, "components", None)
    if parts is None:
        return [attack]
    return [member for part in parts for member in members(part.attack)]


def gradient_free(attack: Any) -> bool:
    """True when ``attack`` only queries the model's outputs (``uses_gradients`` False)."""
    return not capability(attack, "uses_gradients")


def searches_the_model(attack: Any) -> bool:
    """True when ``attack`` searches with the attacked model's outputs alone: gradient-free and not a
    transfer attack (``transfer``: crafted on a surrogate). Such a search finds what misleading gradients
    hide, so the checks' gradient-free attack, and ``evaluate``'s fallback when gradients are masked, is one."""
    return gradient_free(attack) and not capability(attack, "transfer")


def gradients_only(attack: Any) -> bool:
    """True when every member of ``attack`` follows the model's input gradient: its curve is a
    gradient attack's alone (an ensemble with a gradient-free member is not)."""
    return all(capability(member, "uses_gradients") for member in members(attack))


__all__ = ["CAPABILITIES", "capability", "gradient_free", "gradients_only", "members", "searches_the_model"]

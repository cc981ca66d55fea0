"""AutoAttack (Croce & Hein 2020), standard version: APGD-CE, APGD-T, FAB-T and Square, each run
on the samples the previous ones did not fool, with the paper's budgets.

Each component is ours when :data:`advkit.attacks.ATTACKS` has it, otherwise torchattacks' through
:func:`advkit.attacks.from_torchattacks`. Note torchattacks' own ``AutoAttack`` leaves APGD at 10
steps; here every component gets the paper's 100 iterations (Square: 5,000 queries), seed 0.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..attacks import ATTACKS, AttackResult, from_torchattacks
from .construct import by_name, describe

AUTOATTACK = "autoattack"
#: The paper's budgets for the standard version.
STEPS, QUERIES, RESTARTS, SEED = 100, 5000, 1, 0
_TA_NORM = {"linf": "Linf", "l2": "L2"}


@dataclass
class Component:
    """One member of an ensemble and where it came from (for the report)."""

    name: str
    attack: Any
    source: str


class Ensemble:
    """Runs its components in order, each on the samples none before it fooled; a sample counts
    as fooled if any component fooled it. Same call as :meth:`advkit.attacks.Attack.run`."""

    def __init__(self, model: nn.Module, components: list[Component], norm: str):
        self.model, self.components, self.norm = model, components, norm

    def run(self, x: Tensor, y: Tensor | None = None, target: Tensor | None = None, *, eps: float | None = None,
            seed: int | Tensor | None = None, check_success: bool = True) -> AttackResult:
        if target is not None:
            raise ValueError("target: the AutoAttack ensemble is untargeted (APGD-T and FAB-T pick their own targets)")
        x_adv = x.detach().clone()
        success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        forwards = backwards = 0
        for part in self.components:
            idx = (~success).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            part_seed = seed[idx] if isinstance(seed, Tensor) and seed.ndim == 1 else seed  # per-sample seeds follow
            res = part.attack.run(x[idx], None if y is None else y[idx], eps=eps, seed=part_seed, check_success=check_success)
            x_adv[idx], success[idx] = res.x_adv, res.success
            forwards, backwards = forwards + res.forwards, backwards + res.backwards
        return AttackResult(x_adv, success, forwards, backwards)

    def describe(self) -> list[dict[str, str]]:
        """Which component ran from which implementation, with its settings."""
        return [{"name": c.name, "source": c.source, "attack": describe(c.attack)} for c in self.components]

    def __repr__(self) -> str:
        return "AutoAttack(" + ", ".join(f"{c.name}: {c.source}" for c in self.components) + ")"


def build_autoattack(model: nn.Module, norm: str, num_classes: int) -> Ensemble:
    """The standard AutoAttack ensemble for ``model`` under ``norm`` ("linf" or "l2")."""
    if num_classes < 2:
        raise ValueError("AutoAttack needs at least 2 classes")
    ta_norm = _ta_norm(norm)
    return Ensemble(model, [
        component("apgd-ce", "apgd", model, norm, {"steps": STEPS, "restarts": RESTARTS, "loss": "ce", "seed": SEED},
                  lambda ta: ta.APGD(model, norm=ta_norm, steps=STEPS, n_restarts=RESTARTS, loss="ce", seed=SEED)),
        component("apgd-t", "apgd-t", model, norm, {"steps": STEPS, "restarts": RESTARTS, "seed": SEED},
                  lambda ta: ta.APGDT(model, norm=ta_norm, steps=STEPS, n_restarts=RESTARTS, n_classes=num_classes, seed=SEED)),
        component("fab-t", None, model, norm, {},
                  lambda ta: ta.FAB(model, norm=ta_norm, steps=STEPS, n_restarts=RESTARTS, multi_targeted=True,
                                    n_classes=num_classes, seed=SEED)),
        square(model, norm, QUERIES),
    ], norm)


def square(model: nn.Module, norm: str, queries: int = QUERIES) -> Component:
    """Square Attack (Andriushchenko et al. 2020), the gradient-free member, with ``queries`` queries."""
    return component("square", "square", model, norm, {"n_queries": queries, "restarts": RESTARTS, "seed": SEED},
                     lambda ta: ta.Square(model, norm=_ta_norm(norm), n_queries=queries, n_restarts=RESTARTS, seed=SEED))


def component(name: str, ours: str | None, model: nn.Module, norm: str, settings: dict[str, Any],
              theirs: Callable[[Any], Any]) -> Component:
    """Ours (``ATTACKS[ours]`` with ``settings``) when registered, else torchattacks' (``theirs(torchattacks)``)."""
    if ours in ATTACKS:
        return Component(name, by_name(ATTACKS[ours], ours, model, norm, **settings), "advkit")
    attack = from_torchattacks(theirs(_torchattacks(name)), seed=SEED)
    return Component(name, attack, f"torchattacks {importlib.metadata.version('torchattacks')}")


def _ta_norm(norm: str) -> str:
    if norm not in _TA_NORM:
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    return _TA_NORM[norm]


def _torchattacks(component: str) -> Any:
    try:
        import torchattacks
    except ImportError:
        raise ImportError(f"AutoAttack's {component} comes from torchattacks until advkit has its own: "
                          "pip install 'advkit[torchattacks]'") from None
    return torchattacks

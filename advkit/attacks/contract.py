"""The attack contract: what ``advkit.evaluate`` and ``generate`` rely on in an attack object.

Every :class:`~advkit.attacks.Attack` satisfies it (its ``run`` and ``__call__`` are final:
subclasses implement ``perturb``), and so do the AutoAttack ensemble and wrapped torchattacks
attacks, which are Attacks too.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from .base import AttackResult


@runtime_checkable
class AttackLike(Protocol):
    """An attack bound to ``model``, with a budget ``eps`` in ``norm`` (a name in
    :data:`advkit.core.NORMS`). ``warm_starts``: whether ``run`` takes ``x_init``, a point to start
    the search from (``evaluate`` passes where the search at the previous eps ended)."""

    model: nn.Module
    eps: float
    warm_starts: bool

    @property
    def norm(self) -> str: ...

    def run(self, x: Tensor, y: Tensor | None = None, target: Tensor | None = None, *, eps: float | None = None,
            seed: int | Tensor | None = None, check_success: bool = True, x_init: Tensor | None = None
            ) -> AttackResult:
        """Attack ``x`` (labels ``y``, or the model's predictions) at ``eps`` (default: the attack's),
        seeded by ``seed`` (an int, or one per sample); the result lies in the eps-ball and [0, 1]."""
        ...

"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps."""
from __future__ import annotations

from typing import ClassVar

from ..core import Player, play
from .base import Attack, AttackRun


class FGSM(Attack):
    """``x + eps * sign(grad)`` (or ``eps * grad/||grad||_2`` for ``norm="l2"``, the fast gradient method).

    One forward and one backward: the clean forward doubles as the gradient's.
    """

    per_sample = True  # no draws; early stopping per sample
    supports_eot = True  # its gradients come from AttackRun.objective
    settings = ("steps", "alpha")
    steps, alpha = 1, None
    derived: ClassVar[dict] = {"alpha": ("eps", lambda atk, eps: eps)}

    def __init__(self, model, eps: float = 8 / 255, **kwargs):
        """One gradient step of size eps.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget, and the step's size.
            **kwargs: the settings every attack takes (``norm``, ``loss``, ``targeted``, ``early_stop``,
                ``seed``, ``amp``, ``eot``): see :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, **kwargs)

    def perturb(self, run: AttackRun) -> None:
        x_adv = run.x.clone().requires_grad_(True)
        alpha = self.setting("alpha", run.eps)
        step = self.geometry.step(alpha)
        player = Player([x_adv], step, run.feasible, maximize=True)
        play(player, run.objective(x_adv), k=1)
        run.finish(x_adv, evaluate=False)

"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps."""
from __future__ import annotations

from ..core import L2Step, Player, SignStep, play
from .base import Attack, Run


class FGSM(Attack):
    """``x + eps * sign(grad)`` (or ``eps * grad/||grad||_2`` for ``norm="l2"``, the fast gradient method).

    One forward and one backward: the clean forward doubles as the gradient's.
    """

    def __init__(self, model, eps: float = 8 / 255, **kwargs):
        super().__init__(model, eps, **kwargs)

    def perturb(self, run: Run) -> None:
        x_adv = run.x.clone().requires_grad_(True)
        step = SignStep(run.eps) if self.norm == "linf" else L2Step(run.eps)
        player = Player([x_adv], step, run.feasible, maximize=True)
        play(player, run.objective(x_adv), k=1)
        run.finish(x_adv, evaluate=False)

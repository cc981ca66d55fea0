"""MI-FGSM (Dong et al. 2018): iterative FGSM whose steps follow an accumulated, L1-normalised gradient."""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..core import MomentumStep, Player, check_number, play
from .base import Attack, AttackRun


class MIFGSM(Attack):
    """``steps`` signed steps of size ``alpha`` (default eps/steps) along the momentum
    ``g_t = decay * g_{t-1} + grad / ||grad||_1``, each projected onto the eps-ball and [0, 1].

    Starts from ``x`` itself, as in the paper; momentum stabilises the direction across steps,
    which is what makes the examples transfer better than PGD's.
    """

    per_sample = True  # no draws; momentum and early stopping per sample
    supports_eot = True  # its gradients come from AttackRun.objective
    settings = ("steps", "alpha", "decay")
    derived: ClassVar[dict] = {"alpha": ("eps/steps", lambda atk, eps: eps / atk.steps)}

    def __init__(self, model: nn.Module, eps: float = 8 / 255, steps: int = 10, alpha: float | None = None,
                 decay: float = 1.0, **kwargs):
        """Momentum iterative FGSM.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget.
            steps: signed steps (>= 1).
            alpha: the step size (None: eps/steps).
            decay: the momentum's decay factor ``mu`` (1.0 as in the paper; 0: no momentum).
            **kwargs: the settings every attack takes (``norm``, ``loss``, ``targeted``, ``early_stop``,
                ``seed``, ``amp``, ``eot``): see :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, **kwargs)
        self.steps = check_number(steps, "steps", low=1, low_open=False, integer=True)
        self.alpha = None if alpha is None else check_number(alpha, "alpha")
        self.decay = check_number(decay, "decay", low_open=False)  # 0: no momentum, iterative FGSM

    def perturb(self, run: AttackRun) -> None:
        x_adv = run.x.clone().requires_grad_(True)
        step = MomentumStep(self.setting("alpha", run.eps), self.decay, self.geometry)
        play(Player([x_adv], step, run.feasible, maximize=True), run.objective(x_adv), k=self.steps)
        run.finish(x_adv, evaluate=False)

"""MI-FGSM (Dong et al. 2018): iterative FGSM whose steps follow an accumulated, L1-normalised gradient."""
from __future__ import annotations

from torch import nn

from ..core import MomentumStep, Player, play
from .base import Attack, Run


class MIFGSM(Attack):
    """``steps`` signed steps of size ``alpha`` (default eps/steps) along the momentum
    ``g_t = decay * g_{t-1} + grad / ||grad||_1``, each projected onto the eps-ball and [0, 1].

    Starts from ``x`` itself, as in the paper; momentum stabilises the direction across steps,
    which is what makes the examples transfer better than PGD's.
    """

    def __init__(self, model: nn.Module, eps: float = 8 / 255, steps: int = 10, alpha: float | None = None,
                 decay: float = 1.0, **kwargs):
        super().__init__(model, eps, **kwargs)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if alpha is not None and alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if decay < 0:
            raise ValueError(f"decay must be >= 0, got {decay}")
        self.steps, self.alpha, self.decay = steps, alpha, decay

    def perturb(self, run: Run) -> None:
        alpha = self.alpha if self.alpha is not None else run.eps / self.steps
        x_adv = run.x.clone().requires_grad_(True)
        step = MomentumStep(alpha, self.decay, self.norm)
        play(Player([x_adv], step, run.feasible, maximize=True), run.objective(x_adv), k=self.steps)
        run.finish(x_adv, evaluate=False)

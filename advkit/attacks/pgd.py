"""PGD (Madry et al. 2018): projected steepest ascent on the loss from a random start, with restarts."""
from __future__ import annotations

from ..core import L2Step, Player, SignStep, play
from .base import Attack, Run


def madry_step_size(eps: float, steps: int) -> float:
    """Madry et al.'s rule of thumb: 2.5 * eps / steps, so a walk can cross the ball and back."""
    return 2.5 * eps / steps


class PGD(Attack):
    """``steps`` projected steps of size ``alpha`` (default 2.5*eps/steps) under ``norm`` ("linf":
    signed gradient; "l2": normalised gradient), each projected onto the eps-ball and [0, 1].

    ``random_start`` draws the start uniformly in the ball; ``restarts`` runs that many starts and
    keeps each sample's strongest result (only samples not yet fooled are restarted). A warm start
    (``run(x_init=...)``) replaces the first start.
    """

    warm_starts = True

    def __init__(self, model, eps: float = 8 / 255, steps: int = 10, alpha: float | None = None,
                 random_start: bool = True, restarts: int = 1, **kwargs):
        super().__init__(model, eps, **kwargs)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
        if alpha is not None and alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.steps, self.alpha, self.random_start, self.restarts = steps, alpha, random_start, restarts

    def perturb(self, run: Run) -> None:
        alpha = self.alpha if self.alpha is not None else madry_step_size(run.eps, self.steps)
        step = SignStep(alpha) if self.norm == "linf" else L2Step(alpha)
        for restart in range(self.restarts):
            x_adv = run.start(self.random_start)
            play(Player([x_adv], step, run.feasible, maximize=True), run.objective(x_adv), k=self.steps)
            run.finish(x_adv, evaluate=restart + 1 < self.restarts)
            if bool(run.success.all()):
                break

"""PGD (Madry et al. 2018): projected steepest ascent on the loss from a random start, with restarts."""
from __future__ import annotations

from typing import ClassVar

from ..core import Norm, Player, check_number, get_norm, play
from .base import Attack, AttackRun


def madry_step_size(eps: float, steps: int, norm: str | Norm = "linf") -> float:
    """Madry et al.'s rule of thumb, 2.5 * eps / steps (a walk can cross the ball and back), scaled
    per norm (:attr:`~advkit.core.Norm.pgd_step_scale`: L1's sparse steps take 10 * eps / steps)."""
    return get_norm(norm).pgd_step_scale * eps / steps


class PGD(Attack):
    """``steps`` projected steps of size ``alpha`` (default 2.5*eps/steps; L1: 10*eps/steps), each the
    norm's steepest ascent ("linf": signed gradient; "l2": normalised gradient; "l1": signs on a sparse
    share of the largest gradient coordinates) projected onto the eps-ball and [0, 1].

    ``random_start`` draws the start uniformly in the ball; ``restarts`` runs that many starts and
    keeps each sample's strongest result (only samples not yet fooled are restarted). A warm start
    (``run(x_init=...)``) replaces the first start.
    """

    warm_starts = True
    per_sample = True  # random starts from the per-sample seeds, early stopping and restarts per sample
    supports_eot = True  # its gradients come from AttackRun.objective
    settings = ("steps", "alpha", "random_start", "restarts")
    derived: ClassVar[dict] = {"alpha": (lambda atk: f"{get_norm(atk.norm).pgd_step_scale:g}·eps/steps",
                                         lambda atk, eps: madry_step_size(eps, atk.steps, atk.norm))}

    def __init__(self, model, eps: float = 8 / 255, steps: int = 10, alpha: float | None = None,
                 random_start: bool = True, restarts: int = 1, **kwargs):
        """Projected gradient descent of ``steps`` steps from ``restarts`` starts.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget.
            steps: projected steps per start (>= 1).
            alpha: the step size (None: 2.5·eps/steps, Madry et al.'s rule, at whatever eps the call
                runs; L1: 10·eps/steps).
            random_start: start at a uniform draw in the ball (False: at x).
            restarts: starts per sample (>= 1); a restart attacks only the samples not yet fooled.
            **kwargs: the settings every attack takes (``norm``, ``loss``, ``targeted``, ``early_stop``,
                ``seed``, ``amp``, ``eot``): see :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, **kwargs)
        self.steps = check_number(steps, "steps", low=1, low_open=False, integer=True)
        self.restarts = check_number(restarts, "restarts", low=1, low_open=False, integer=True)
        self.alpha = None if alpha is None else check_number(alpha, "alpha")
        self.random_start = bool(random_start)

    def perturb(self, run: AttackRun) -> None:
        alpha = self.setting("alpha", run.eps)
        step = self.geometry.step(alpha)
        for restart in range(self.restarts):
            x_adv = run.start(self.random_start)
            play(Player([x_adv], step, run.feasible, maximize=True), run.objective(x_adv), k=self.steps)
            run.finish(x_adv, evaluate=restart + 1 < self.restarts)
            if bool(run.success.all()):
                break

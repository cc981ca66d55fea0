"""APGD (Croce & Hein, ICML 2020): step-size-free PGD with momentum, halving its step at
checkpoints when progress stalls and restarting from the best point found.

Algorithm 1 of the paper maps onto the core as one step rule, :class:`APGDStep` (lines 7-8, the
momentum step), driven by :class:`StepSizeSchedule` (lines 9-16: track ``x_max``, and at each
checkpoint ``w_j`` halve ``eta`` and go back to ``x_max`` where Condition 1 or 2 holds). The
schedule must act after ``f(x^(w_j))`` is known and before the step from ``x^(w_j)``: that is
inside the step rule, which sees the gradient, not in a hook after the step.
"""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
from torch import Tensor, nn

from ..core import Norm, Player, Projection, check_number, per_sample, play
from .base import Attack, AttackRun


def checkpoints(steps: int) -> list[int]:
    """``w_j = ceil(p_j * steps)`` for ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 9)) for q in p})


class StepSizeSchedule:
    """Per-sample step sizes ``eta`` (N,) with the paper's halving rule.

    Fed the loss of every iterate through :meth:`observe`; :meth:`before_step` then updates the
    best point and, at a checkpoint, halves ``eta`` (in place, so the step rule sees it) and moves
    the halved samples back to ``x_max`` with the gradient stored there.
    """

    def __init__(self, eta: Tensor, steps: int, rho: float = 0.75):
        self.eta, self.rho = eta, rho
        self.checkpoints = set(checkpoints(steps)) - {0}
        self.loss = torch.zeros(eta.shape, device=eta.device)  # the losses' dtype (float32), whatever eta's
        self.i = self.last_checkpoint = 0

    def observe(self, idx: Tensor | None, losses: Tensor) -> None:
        """The per-sample loss of the current iterate (rows ``idx``; None: all)."""
        if idx is None:
            self.loss = losses.to(self.loss.dtype, copy=True)
        else:
            self.loss[idx] = losses.to(self.loss.dtype)

    def before_step(self, x: Tensor, g: Tensor) -> Tensor:
        """Update the best point with the current iterate ``x`` (gradient ``g``), apply the checkpoint
        rule, and return the gradient to step along (``g``, or the best point's where restarted)."""
        if self.i == 0:
            self._start(x, g)
        else:
            self._track(x, g)
        if self.i in self.checkpoints:
            g = self._checkpoint(x, g)
        self.i += 1
        return g

    def _start(self, x: Tensor, g: Tensor) -> None:
        self.best_loss, self.best_x, self.best_grad = self.loss.clone(), x.clone(), g.clone()
        self.prev_loss, self.increases = self.loss.clone(), torch.zeros_like(self.loss)
        self.best_loss_at_check = self.loss.clone()
        self.halved_at_check = torch.zeros_like(self.loss, dtype=torch.bool)

    def _track(self, x: Tensor, g: Tensor) -> None:
        self.increases += (self.loss > self.prev_loss).to(self.increases.dtype)
        self.prev_loss = self.loss.clone()
        better = self.loss > self.best_loss
        mask = per_sample(better, x).bool()
        self.best_loss = torch.where(better, self.loss, self.best_loss)
        self.best_x = torch.where(mask, x, self.best_x)
        self.best_grad = torch.where(mask, g, self.best_grad)

    def _checkpoint(self, x: Tensor, g: Tensor) -> Tensor:
        """Condition 1: fewer than ``rho`` of the steps since the last checkpoint raised the loss.
        Condition 2: eta was not halved at the last checkpoint and the best loss has not moved since."""
        oscillating = self.increases < self.rho * (self.i - self.last_checkpoint)
        stalled = ~self.halved_at_check & (self.best_loss <= self.best_loss_at_check)
        halve = oscillating | stalled
        self.eta.copy_(torch.where(halve, self.eta / 2, self.eta))
        mask = per_sample(halve, x).bool()
        x.copy_(torch.where(mask, self.best_x, x))
        self.halved_at_check, self.best_loss_at_check = halve, self.best_loss.clone()
        self.increases.zero_()
        self.last_checkpoint = self.i
        return torch.where(mask, self.best_grad, g)


class APGDStep:
    """Lines 7-8 of Algorithm 1: ``z = P(x + eta * s(g))``, then
    ``x <- x + a (z - x) + (1 - a)(x - x_prev)`` with ``a = momentum`` (1 on the first step);
    ``s`` is the norm's steepest-ascent direction (the sign under L-inf, the normalised gradient under
    L2). The player projects the result."""

    def __init__(self, schedule: StepSizeSchedule, norm: Norm, project: Projection, momentum: float = 0.75):
        self.schedule, self.project, self.momentum = schedule, project, momentum
        self.direction = norm.step(schedule.eta)
        self.prev: Tensor | None = None

    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor], ascend: bool) -> None:
        (x,), (g,) = params, grads
        g = self.schedule.before_step(x, g)
        z = x.clone()
        self.direction([z], [g], ascend)
        self.project(z)
        a, prev = (1.0, x) if self.prev is None else (self.momentum, self.prev)
        self.prev = x.clone()
        x.add_(a * (z - x) + (1 - a) * (x - prev))


class APGD(Attack):
    """Auto-PGD with ``loss`` "ce" (APGD-CE) or "dlr" (APGD-DLR), ``norm`` "linf" or "l2".

    ``steps`` iterations from a random start, initial step ``2 * eps``, momentum 0.75, and the
    step-halving checkpoints with parameter ``rho``; ``restarts`` fresh starts for the samples not
    yet fooled, each sample keeping its strongest result. A warm start (``run(x_init=...)``)
    replaces the first random start.
    """

    warm_starts = True
    per_sample = True  # random starts from the per-sample seeds, step sizes and checkpoints per sample
    supports_eot = True  # its gradients come from AttackRun.objective
    settings = ("steps", "eta", "restarts", "rho")
    eta = None  # the initial step size, always the paper's rule
    derived: ClassVar[dict] = {"eta": ("2·eps, halved where progress stalls", lambda atk, eps: 2 * eps)}

    def __init__(self, model: nn.Module, eps: float = 8 / 255, steps: int = 100, norm: str = "linf",
                 loss: str = "ce", restarts: int = 1, rho: float = 0.75, **kwargs):
        """Auto-PGD (Croce and Hein 2020).

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget.
            steps: iterations per start (>= 1).
            norm: ``"linf"`` or ``"l2"``.
            loss: ``"ce"`` (APGD-CE) or ``"dlr"`` (APGD-DLR).
            restarts: starts per sample (>= 1); a restart attacks only the samples not yet fooled.
            rho: the step-halving checkpoints' threshold (the paper's 0.75).
            **kwargs: ``targeted``, ``early_stop``, ``seed``, ``amp``, ``eot``: see
                :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, norm=norm, loss=loss, **kwargs)
        self.steps = check_number(steps, "steps", low=1, low_open=False, integer=True)
        self.restarts = check_number(restarts, "restarts", low=1, low_open=False, integer=True)
        self.rho = check_number(rho, "rho", low_open=False, high=1)

    def perturb(self, run: AttackRun) -> None:
        run.forward_clean()
        for _ in range(self.restarts):
            if bool(run.success.all()):
                break
            eta = torch.full((len(run.x),), self.setting("eta", run.eps), device=run.x.device, dtype=run.x.dtype)
            schedule = StepSizeSchedule(eta, self.steps, self.rho)
            x_adv = run.start()
            player = Player([x_adv], APGDStep(schedule, self.geometry, run.feasible), run.feasible, maximize=True)
            play(player, run.objective(x_adv, on_losses=schedule.observe), k=self.steps)
            run.finish(x_adv)


class APGDT(APGD):
    """APGD-T, AutoAttack's targeted APGD: its result is untargeted (success is any wrong class),
    but each pass runs APGD with the targeted DLR loss towards one of the ``n_target_classes``
    classes the clean model ranks highest after its prediction, on the samples still unbroken.

    The targeted DLR here is ``(z_t - max_{j != t} z_j) / (z_pi1 - (z_pi3 + z_pi4) / 2)``
    (AutoAttack's numerator is ``z_t - z_y``). Given a target per sample (``targeted`` mode or
    ``target=``), there is nothing to choose: it is one targeted APGD-DLR run towards it.
    """

    losses = ("dlr",)
    warm_starts = False  # each target class gets its own fresh search
    per_sample = False  # each target class's search is seeded once per call
    supports_eot = False  # its targets' searches and their judge are single-draw
    settings = ("steps", "eta", "n_target_classes", "restarts", "rho")

    def __init__(self, model: nn.Module, eps: float = 8 / 255, steps: int = 100, norm: str = "linf",
                 n_target_classes: int = 9, restarts: int = 1, rho: float = 0.75, *, loss: str = "dlr", **kwargs):
        """APGD-T: APGD with the targeted DLR loss towards each of the top classes in turn.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget.
            steps: iterations per target class and start (>= 1).
            norm: ``"linf"`` or ``"l2"``.
            n_target_classes: how many of the classes ranked highest after the prediction are attacked in turn.
            restarts: starts per target class (>= 1).
            rho: the step-halving checkpoints' threshold.
            loss: ``"dlr"`` (the targeted DLR loss).
            **kwargs: ``targeted``, ``early_stop``, ``seed``, ``amp``: see :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, steps, norm, loss, restarts, rho, **kwargs)
        self.n_target_classes = check_number(n_target_classes, "n_target_classes", low=1, low_open=False, integer=True)

    def perturb(self, run: AttackRun) -> None:
        if run.targeted:
            return super().perturb(run)
        sub = APGD(self.model, run.eps, self.steps, self.norm, "dlr", self.restarts, self.rho,
                   early_stop=self.early_stop, amp=self.amp)
        for target in run.ranked_targets(self.n_target_classes):
            idx = (~run.success).nonzero().squeeze(1)
            seed = int(torch.randint(2**31, (1,), generator=run.generator, device=run.generator.device))
            res = run.delegate(sub, idx, target=target[idx], seed=seed, check_success=False)
            with torch.no_grad():
                logits = run.logits(res.x_adv)
            run.observe(idx, res.x_adv, logits, run.loss_fn(logits, run.labels[idx], False))

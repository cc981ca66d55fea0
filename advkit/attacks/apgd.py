"""APGD (Croce & Hein, ICML 2020): step-size-free PGD with momentum, halving its step at
checkpoints when progress stalls and restarting from the best point found.

Algorithm 1 of the paper maps onto the core as one step rule, :class:`APGDStep` (lines 7-8, the
momentum step), driven by :class:`StepSizeSchedule` (lines 9-16: track ``x_max``, and at each
checkpoint ``w_j`` halve ``eta`` and go back to ``x_max`` where Condition 1 or 2 holds). The
schedule must act after ``f(x^(w_j))`` is known and before the step from ``x^(w_j)``: that is
inside the step rule, which sees the gradient, not in a hook after the step.

Under L1 APGD follows "Mind the box" (Croce & Hein 2021) and the authors' code instead:
:class:`SparsitySchedule` (no momentum, initial step eps, a checkpoint every 4% of the steps that
adapts the sparse step's share of coordinates to the best point's and resets or shrinks the step),
sparse steps (:class:`~advkit.core.L1Step`), the exact projection onto the L1 ball and the box, and,
with ``large_eps``, AutoAttack's schedule of 30% of the steps at 3 eps, 30% at 2 eps, 40% at eps.
"""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
from torch import Tensor, nn

from ..core import Box, Norm, Player, Projection, StepRule, check_number, per_sample, play
from .base import Attack, AttackRun
from .losses import dlr_scale


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

    def direction(self, norm: Norm) -> StepRule:
        """The steepest-ascent step of ``norm`` with this schedule's step sizes."""
        return norm.step(self.eta)

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


class SparsitySchedule(StepSizeSchedule):
    """APGD-L1's schedule (the authors' code): step sizes ``eta`` (N,) starting at eps and the share
    of coordinates each sparse step moves, checked every ``max(int(0.04 steps), 1)`` steps.

    At a checkpoint the share becomes the best point's share of changed coordinates divided by 1.5;
    where that count fell by more than 5% since the last checkpoint the step is reset to eps and the
    sample goes back to its best point, elsewhere the step is divided by 1.5 (never under eps / 10).
    From ``x0`` itself the share starts at 0.2; from a warm start, at the start's share / 1.5.
    """

    def __init__(self, eta: Tensor, steps: int, x0: Tensor, start: Tensor | None = None):
        super().__init__(eta, steps)
        every = max(int(0.04 * steps), 1)
        self.checkpoints = set(range(every, steps + 1, every))
        self.x0, self.eta_max, self.dim = x0, eta.clone(), x0[0].numel()
        if start is None:
            self.changed = torch.full_like(eta, float(self.dim))
            self.sparsity = torch.full_like(eta, 0.2)
        else:
            self.changed = self._changed(start)
            self.sparsity = self.changed / self.dim / 1.5

    def direction(self, norm: Norm) -> StepRule:
        """The sparse step with this schedule's step sizes and shares (updated in place)."""
        return norm.step(self.eta, self.sparsity)

    def _changed(self, x: Tensor) -> Tensor:
        return (x != self.x0).flatten(1).sum(1).to(self.eta.dtype)

    def _checkpoint(self, x: Tensor, g: Tensor) -> Tensor:
        changed = self._changed(self.best_x)
        sparser = changed < 0.95 * self.changed
        self.sparsity.copy_(changed / self.dim / 1.5)
        eta = torch.where(sparser, self.eta_max, self.eta / 1.5)
        self.eta.copy_(torch.minimum(torch.maximum(eta, self.eta_max / 10), self.eta_max))
        self.changed = changed
        mask = per_sample(sparser, x).bool()
        x.copy_(torch.where(mask, self.best_x, x))
        return torch.where(mask, self.best_grad, g)


class APGDStep:
    """Lines 7-8 of Algorithm 1: ``z = P(x + eta * s(g))``, then
    ``x <- x + a (z - x) + (1 - a)(x - x_prev)`` with ``a = momentum`` (1 on the first step);
    ``s`` is the norm's steepest-ascent direction (the sign under L-inf, the normalised gradient under
    L2). The player projects the result."""

    def __init__(self, schedule: StepSizeSchedule, norm: Norm, project: Projection, momentum: float = 0.75):
        self.schedule, self.project, self.momentum = schedule, project, momentum
        self.direction = schedule.direction(norm)
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
    """Auto-PGD with ``loss`` "ce" (APGD-CE) or "dlr" (APGD-DLR), ``norm`` "linf", "l2" or "l1".

    ``steps`` iterations from a random start, initial step ``2 * eps``, momentum 0.75, and the
    step-halving checkpoints with parameter ``rho``; ``restarts`` fresh starts for the samples not
    yet fooled, each sample keeping its strongest result. A warm start (``run(x_init=...)``)
    replaces the first random start. Under L1: the rules of APGD-L1 (:class:`SparsitySchedule`,
    initial step eps, no momentum; ``rho`` unused) and, with ``large_eps``, AutoAttack's eps schedule.
    """

    warm_starts = True
    per_sample = True  # random starts from the per-sample seeds, step sizes and checkpoints per sample
    supports_eot = True  # its gradients come from AttackRun.objective
    settings = ("steps", "eta", "restarts", "rho", "large_eps")
    #: AutoAttack's L1 schedule: (share of the steps, multiple of eps) per stage, each warm-starting the next.
    LARGE_EPS = ((0.3, 3.0), (0.3, 2.0), (0.4, 1.0))
    eta = None  # the initial step size, always the paper's rule
    derived: ClassVar[dict] = {"eta": ("2·eps (L1: eps), halved where progress stalls",
                                       lambda atk, eps: eps if atk.norm == "l1" else 2 * eps)}

    def __init__(self, model: nn.Module, eps: float = 8 / 255, steps: int = 100, norm: str = "linf",
                 loss: str = "ce", restarts: int = 1, rho: float = 0.75, large_eps: bool = False, **kwargs):
        """Auto-PGD (Croce and Hein 2020).

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget.
            steps: iterations per start (>= 1).
            norm: ``"linf"``, ``"l2"`` or ``"l1"``.
            loss: ``"ce"`` (APGD-CE) or ``"dlr"`` (APGD-DLR).
            restarts: starts per sample (>= 1); a restart attacks only the samples not yet fooled.
            rho: the step-halving checkpoints' threshold (the paper's 0.75; not used under L1).
            large_eps: under L1 only, AutoAttack's schedule: 30% of the steps at 3 eps, 30% at 2 eps,
                then 40% at eps, each stage starting where the last ended (only the last stage's
                points count).
            **kwargs: ``targeted``, ``early_stop``, ``seed``, ``amp``, ``eot``: see
                :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, norm=norm, loss=loss, **kwargs)
        self.steps = check_number(steps, "steps", low=1, low_open=False, integer=True)
        self.restarts = check_number(restarts, "restarts", low=1, low_open=False, integer=True)
        self.rho = check_number(rho, "rho", low_open=False, high=1)
        if not isinstance(large_eps, bool):
            raise TypeError(f"large_eps must be True or False, got {large_eps!r}")
        if large_eps and self.norm != "l1":
            raise ValueError(f"large_eps is AutoAttack's L1 schedule; norm is {self.norm!r}")
        self.large_eps = large_eps

    def perturb(self, run: AttackRun) -> None:
        run.forward_clean()
        for _ in range(self.restarts):
            if bool(run.success.all()):
                break
            if self.norm == "l1":
                self._l1_start(run)
            else:
                eta = torch.full((len(run.x),), self.setting("eta", run.eps), device=run.x.device, dtype=run.x.dtype)
                schedule = StepSizeSchedule(eta, self.steps, self.rho)
                x_adv = run.start()
                player = Player([x_adv], APGDStep(schedule, self.geometry, run.feasible), run.feasible, maximize=True)
                play(player, run.objective(x_adv, on_losses=schedule.observe), k=self.steps)
                run.finish(x_adv)

    def _l1_start(self, run: AttackRun) -> None:
        """One start of APGD-L1: straight at eps, or through AutoAttack's larger-eps stages."""
        warm = run.x_init is not None
        if not self.large_eps:
            self._l1_stage(run, run.start(), run.eps, self.steps, warm, judged=True)
            return
        x_adv = run.start() if warm else self.geometry.random_start(run.x, 3 * run.eps, run.draw)
        steps = [math.ceil(share * self.steps) for share, _ in self.LARGE_EPS[:-1]]
        steps = steps + [self.steps - sum(steps)] if sum(steps) < self.steps else [0] * len(steps) + [self.steps]
        for i, ((_, factor), k) in enumerate(zip(self.LARGE_EPS, steps, strict=True)):
            with torch.no_grad():
                (self.geometry.ball(run.x, factor * run.eps) & Box(0.0, 1.0))(x_adv)
            if k > 0:
                x_adv = self._l1_stage(run, x_adv.detach().requires_grad_(True), factor * run.eps, k,
                                       warm=True, judged=i == len(steps) - 1)

    def _l1_stage(self, run: AttackRun, x_adv: Tensor, eps: float, steps: int, warm: bool, judged: bool) -> Tensor:
        """``steps`` APGD-L1 steps from ``x_adv`` in the ball of radius ``eps``. ``judged``: the
        iterates are this call's candidates (eps is the call's); otherwise only their loss guides the
        schedule and the stage's highest-loss point is returned as the next stage's start."""
        eta = torch.full((len(run.x),), eps, device=run.x.device, dtype=run.x.dtype)
        schedule = SparsitySchedule(eta, steps, run.x, x_adv.detach() if warm else None)
        feasible = self.geometry.ball(run.x, eps) & Box(0.0, 1.0)
        player = Player([x_adv], APGDStep(schedule, self.geometry, feasible, momentum=1.0), feasible, maximize=True)
        if judged:
            play(player, run.objective(x_adv, on_losses=schedule.observe), k=steps)
            run.finish(x_adv)
            return x_adv
        play(player, _unjudged_objective(run, x_adv, schedule), k=steps)
        if not hasattr(schedule, "best_x"):  # every sample was fooled before the first step
            return x_adv.detach()
        with torch.no_grad():  # the last iterate competes with the best one too
            best = schedule.best_x.clone()
            idx = (~run.success).nonzero().squeeze(1)
            if len(idx):
                better = _guide_loss(run, run.logits(x_adv[idx]), idx) > schedule.best_loss[idx]
                best[idx[better]] = x_adv[idx[better]].detach()
        return best


def _guide_loss(run: AttackRun, logits: Tensor, idx: Tensor) -> Tensor:
    """The loss of rows ``idx`` that guides a larger-eps stage: the run's, except a targeted DLR, which
    is AutoAttack's here, ``(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` with ``y`` the true class.
    It equals the run's targeted DLR until the true class loses the top rank, which at 3 or 2 eps
    happens early; from there it keeps moving away from the true class, not just past the runner-up,
    and that margin is what survives the projection onto the smaller balls (benchmarks/README.md, "L1
    AutoAttack")."""
    labels = run.labels[idx]
    if not (run.targeted and run.attack.loss == "dlr" and logits.shape[1] >= 4):
        return run.loss_fn(logits, labels, run.targeted)
    gap = logits.gather(1, labels[:, None]) - logits.gather(1, run.true_labels[idx][:, None])
    return gap.squeeze(1) / dlr_scale(logits, targeted=True)


def _unjudged_objective(run: AttackRun, x_adv: Tensor, schedule: StepSizeSchedule):
    """The summed loss of the samples not yet fooled, fed to ``schedule`` but never judged (a
    larger-eps stage's iterates lie outside the call's ball)."""

    def loss() -> Tensor | None:
        idx = (~run.success).nonzero().squeeze(1)
        if len(idx) == 0:
            return None
        losses = _guide_loss(run, run.logits(x_adv[idx], backward=True), idx)
        schedule.observe(idx, losses.detach())
        return losses.sum()

    return loss


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
    supports_eot = True  # each target's search is APGD's (eot passed on), and each result is judged over eot draws
    settings = ("steps", "eta", "n_target_classes", "restarts", "rho", "large_eps")

    def __init__(self, model: nn.Module, eps: float = 8 / 255, steps: int = 100, norm: str = "linf",
                 n_target_classes: int = 9, restarts: int = 1, rho: float = 0.75, *, loss: str = "dlr",
                 large_eps: bool = False, **kwargs):
        """APGD-T: APGD with the targeted DLR loss towards each of the top classes in turn.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget.
            steps: iterations per target class and start (>= 1).
            norm: ``"linf"``, ``"l2"`` or ``"l1"``.
            n_target_classes: how many of the classes ranked highest after the prediction are attacked in turn.
            restarts: starts per target class (>= 1).
            rho: the step-halving checkpoints' threshold.
            loss: ``"dlr"`` (the targeted DLR loss).
            large_eps: under L1 only, AutoAttack's schedule of larger eps first (see :class:`APGD`).
            **kwargs: ``targeted``, ``early_stop``, ``seed``, ``amp``, ``eot``: see
                :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, steps, norm, loss, restarts, rho, large_eps, **kwargs)
        self.n_target_classes = check_number(n_target_classes, "n_target_classes", low=1, low_open=False, integer=True)

    def perturb(self, run: AttackRun) -> None:
        if run.targeted:
            return super().perturb(run)
        sub = APGD(self.model, run.eps, self.steps, self.norm, "dlr", self.restarts, self.rho, self.large_eps,
                   early_stop=self.early_stop, amp=self.amp, eot=self.eot)
        for target in run.ranked_targets(self.n_target_classes):
            idx = (~run.success).nonzero().squeeze(1)
            seed = int(torch.randint(2**31, (1,), generator=run.generator, device=run.generator.device))
            res = run.delegate(sub, idx, target=target[idx], seed=seed, check_success=False)
            run.record(idx, res.x_adv, *run.judge(res.x_adv, run.labels[idx]))  # untargeted, over eot draws

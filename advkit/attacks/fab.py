"""FAB-T (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with a fast adaptive
boundary attack"), the targeted version that AutoAttack runs.

Each step linearises the decision boundary between the true class ``y`` and a target ``t``,
``f(x) = z_t(x) - z_y(x)``, at the iterate ``x``: the hyperplane ``f(x) + g . (z - x) = 0``.
It projects both the iterate and the clean point ``x0`` onto that hyperplane (the smallest
move in the attack's norm that also stays in [0, 1]), giving ``d1`` and ``d2``, and steps to
``(1 - a) (x + eta d1) + a (x0 + eta d2)`` with ``a = min(|d1| / (|d1| + |d2|), alpha_max)``:
biased towards the clean point, so the search stays close to it. An iterate that crossed the
boundary outside the eps-ball is pulled back towards ``x0`` by the factor ``beta`` and steps on
from there with the same linearisation, so each step costs one forward and one backward pass
(the authors' code spends a second forward on each step's check and a new gradient after each
pull-back). FAB minimises the distortion; as a fixed-eps attack a sample counts as fooled once
an iterate inside the eps-ball is. Unbounded (``eps=None`` or ``run(eps=math.inf)``, the
``minimum_norm`` mode, as the authors' single run does) every adversarial iterate is pulled back
towards ``x0``, each sample runs every target class, and its result is the closest adversarial
iterate of all: one run gives the whole accuracy-versus-eps curve.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..core import Box, Norm, Player, check_number, get_norm, play
from .base import Attack, AttackRun
from .cw import Smallest
from .losses import succeeded


def hyperplane_step(t: Tensor, w: Tensor, c: Tensor, norm: str | Norm) -> Tensor:
    """The smallest ``d`` in ``norm`` (L-inf, L2 or L1; a name or a geometry) with ``w . d = c`` and
    ``t + d`` in [0, 1], row by row (``t``, ``w``: (N, D); ``c``: (N,)). Where the box makes the
    plane unreachable, the move that gets closest: every coordinate pushed to the bound it favours.

    With ``c >= 0`` (flip the signs otherwise) the minimiser is ``d_i = sign(w_i) min(lam g_i, r_i)``
    where ``r_i`` is the room to the favoured bound, ``g_i`` the norm's least-norm direction
    (:meth:`~advkit.core.Norm.least_norm_direction`: 1 under L-inf, ``|w_i|`` under L2), and
    ``lam`` the smallest value reaching ``c``: ``w . d`` is piecewise linear and increasing in
    ``lam`` with breakpoints ``r_i / g_i``, so sorting them locates ``lam`` exactly.

    Under L1 the least-norm direction is all on the largest weights, which the box cuts short: the
    minimiser fills coordinates to their bound in decreasing order of ``|w_i|`` (gaining ``|w_i|``
    per unit of L1 norm, the most any coordinate left can) until ``c`` is reached: a fractional
    knapsack, located by sorting the weights."""
    flip = torch.where(c < 0, -1.0, 1.0).to(w.dtype)
    w, c = w * flip[:, None], c * flip
    a = w.abs()
    room = torch.where(w > 0, 1 - t, t).clamp_min(0)
    if get_norm(norm).name == "l1":
        return torch.sign(w) * _fill_largest(a, room, c)
    g = get_norm(norm).least_norm_direction(a)
    live = a > 0
    breaks = torch.where(live, room / g.clamp_min(1e-30), torch.full_like(a, float("inf")))
    breaks, order = breaks.sort(1)
    a_s, g_s, room_s = a.gather(1, order), g.gather(1, order), room.gather(1, order)
    saturated = (a_s * room_s).cumsum(1) - a_s * room_s  # coordinates before k at their bound
    slope = (a_s * g_s).flip(1).cumsum(1).flip(1)  # coordinates from k on still growing with lam
    value = torch.where(slope > 0, saturated + breaks.nan_to_num(posinf=0.0) * slope, saturated + a_s * room_s)
    k = (value < c[:, None]).sum(1, keepdim=True)  # first breakpoint at which w . d reaches c
    reachable = k.squeeze(1) < a.shape[1]
    k = k.clamp_max(a.shape[1] - 1)
    lam = (c[:, None] - saturated.gather(1, k)) / slope.gather(1, k).clamp_min(1e-30)
    lam = torch.where(reachable[:, None], lam.clamp_min(0), torch.full_like(lam, float("inf")))
    move = torch.where(live, torch.minimum(lam * g, room), torch.zeros_like(a))
    return torch.sign(w) * move


def _fill_largest(a: Tensor, room: Tensor, c: Tensor) -> Tensor:
    """Per row, the move ``m`` (0 <= m <= room) of least sum with ``a . m = c``: coordinates filled to
    ``room`` in decreasing order of ``a``, the last one partly (all of them where ``c`` is out of reach)."""
    a_s, order = a.sort(1, descending=True)
    room_s = room.gather(1, order)
    gain = a_s * room_s
    before = gain.cumsum(1) - gain  # what the coordinates ahead of each one reach when full
    part = ((c[:, None] - before) / a_s.clamp_min(1e-30)).clamp_min(0)
    move_s = torch.where(a_s > 0, torch.minimum(part, room_s), torch.zeros_like(a_s))
    return torch.zeros_like(a).scatter(1, order, move_s)


class FABStep:
    """One FAB move for the rows the last objective evaluated (``search.idx``). A row whose iterate
    crossed the boundary outside the ball is first pulled back towards ``x0`` by ``beta``; every
    row then steps with the boundary linearised at the evaluated iterate."""

    def __init__(self, attack: FAB, search: _Search):
        self.attack, self.search = attack, search

    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor], ascend: bool) -> None:
        (x,), (grad,) = params, grads
        s, atk = self.search, self.attack
        idx = s.idx
        x0, seen = s.x0[idx].flatten(1), x[idx].flatten(1)
        xi = torch.where(s.back[:, None], x0 + atk.beta * (seen - x0), seen)
        g, f = grad[idx].flatten(1), s.f
        offsets = torch.cat([((xi - seen) * g).sum(1), ((x0 - seen) * g).sum(1)])
        both = hyperplane_step(torch.cat([xi, x0]), torch.cat([g, g]), -f.repeat(2) - offsets, atk.geometry)
        d1, d2 = both[:len(idx)], both[len(idx):]
        a1, a2 = atk.geometry.distance(d1).clamp_min(1e-8), atk.geometry.distance(d2).clamp_min(1e-8)
        alpha = (a1 / (a1 + a2)).clamp(0, atk.alpha_max)[:, None]
        x[idx] = ((xi + atk.eta * d1) * (1 - alpha) + (x0 + atk.eta * d2) * alpha).clamp(0, 1).view_as(x[idx])


class _Search:
    """One FAB run of ``steps`` steps towards ``target`` (N,), for the samples not yet fooled.
    ``smallest`` (the minimum-norm mode): where each sample's closest adversarial iterate is kept."""

    def __init__(self, attack: FAB, run: AttackRun, target: Tensor, smallest: Smallest | None = None):
        self.attack, self.run, self.target, self.x0, self.smallest = attack, run, target, run.x, smallest
        self.idx = self.back = self.f = None

    def record(self, idx: Tensor, x_now: Tensor, hit: Tensor, losses: Tensor) -> Tensor:
        """Count as fooled the rows of ``x_now`` that cross (``hit``) inside the eps-ball; returns which
        crossed outside it (to be pulled back). In the minimum-norm mode every crossing is kept if
        closest so far, and pulled back. ``losses``: the rows' losses, for the run's best tracking."""
        run = self.run
        dist = self.attack.geometry.distance(x_now - self.x0[idx])
        if self.smallest is not None:
            self.smallest.update(x_now, dist, hit, idx)
            return hit
        inside = dist <= run.eps
        if bool(inside.any()):
            rows = inside.nonzero().squeeze(1)
            run.record(idx[rows], x_now[rows], hit[rows], losses[rows])
        return hit & ~inside

    def objective(self, x: Tensor):
        run = self.run

        def loss() -> Tensor | None:
            idx = (~run.success).nonzero().squeeze(1)
            if len(idx) == 0:
                return None
            xa, target, labels = x[idx], self.target[idx], run.labels[idx]
            rows = torch.arange(len(idx), device=idx.device)
            losses = torch.zeros(len(idx), device=idx.device)

            def term(logits: Tensor) -> tuple[Tensor, Tensor]:
                nonlocal losses
                rival = run.true_labels[idx] if not run.targeted else logits.detach().scatter(
                    1, target[:, None], float("-inf")).argmax(1)  # the class the target must overtake
                losses = losses + run.loss_fn(logits.detach(), labels, run.targeted)
                return logits[rows, target] - logits[rows, rival], succeeded(logits.detach(), labels, run.targeted)

            out, f, hit = run.expected(xa, term)  # eot > 1: f and its gradient averaged over the draws
            self.back = self.record(idx, xa.detach(), hit, losses / self.attack.eot)
            self.idx, self.f = idx, f
            return out

        return loss

    @torch.no_grad()
    def finish(self, x: Tensor) -> None:
        """Judge the last iterates (after the last step no objective saw them), over ``eot`` draws."""
        idx = (~self.run.success).nonzero().squeeze(1)
        if len(idx):
            self.record(idx, x[idx], *self.run.judge(x[idx], self.run.labels[idx]))


class FAB(Attack):
    """FAB-T: for each of the ``n_target_classes`` classes the clean model ranks highest after its
    prediction, in turn, a FAB run of ``steps`` steps from the clean point towards the boundary
    between the true class and that class, on the samples still unbroken. Success is any wrong
    class (untargeted). Given a target per sample (``targeted`` mode or ``target=``), one run
    towards the boundary between the target and its strongest rival class; success is the target.
    A sample stops at its first success inside the ball. Unbounded (``eps=None``), each sample's
    result is its closest adversarial iterate over every run (see the module's docstring).

    ``alpha_max`` caps the pull towards the clean point, ``eta`` overshoots each projection,
    ``beta`` shrinks an iterate that crossed the boundary outside the ball towards the clean point.
    """

    norms = ("linf", "l2", "l1")  # hyperplane_step finds the least-norm move in these
    supports_eot = True  # eot > 1: each step's boundary linearised on f and its gradient averaged over draws
    minimum_norm = True  # eps=None or math.inf: each sample's smallest perturbation found
    losses = ("margin",)
    settings = ("steps", "n_target_classes", "alpha_max", "eta", "beta")

    def __init__(self, model: nn.Module, eps: float | None = 8 / 255, steps: int = 100, norm: str = "linf",
                 n_target_classes: int = 9, alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9,
                 *, loss: str = "margin", **kwargs):
        """FAB-T (Croce and Hein 2020), the minimum-norm attack of AutoAttack.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget a success must lie within, or None (unbounded: the smallest perturbation found).
            steps: FAB steps per target class (>= 1).
            norm: ``"linf"``, ``"l2"`` or ``"l1"``.
            n_target_classes: how many of the classes ranked highest after the prediction are tried in turn.
            alpha_max: the cap on the pull towards the clean point, in [0, 1].
            eta: the overshoot factor of each projection onto the boundary (the paper's 1.05).
            beta: the factor, in (0, 1), that pulls an iterate that crossed the boundary outside the ball
                back towards x.
            loss: ``"margin"``.
            **kwargs: ``targeted``, ``early_stop``, ``seed``, ``amp``, ``eot``: see
                :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, norm=norm, loss=loss, **kwargs)
        self.steps = check_number(steps, "steps", low=1, low_open=False, integer=True)
        self.n_target_classes = check_number(n_target_classes, "n_target_classes", low=1, low_open=False, integer=True)
        self.alpha_max = check_number(alpha_max, "alpha_max", low_open=False, high=1.0)
        self.eta = check_number(eta, "eta")
        self.beta = check_number(beta, "beta", high=1.0, high_open=True)

    def perturb(self, run: AttackRun) -> None:
        smallest = Smallest(run.x) if run.eps == math.inf else None  # success is only decided at the end
        if run.targeted:
            run.forward_clean()
            self._search(run, run.labels, smallest)
        else:
            for target in run.ranked_targets(self.n_target_classes):
                self._search(run, target, smallest)
        if smallest is not None:
            found = smallest.dist < math.inf
            run.best[found] = smallest.x_adv[found]
            run.success |= found

    def _search(self, run: AttackRun, target: Tensor, smallest: Smallest | None) -> None:
        search = _Search(self, run, target, smallest)
        x = run.x.clone().requires_grad_(True)
        player = Player([x], FABStep(self, search), Box(0.0, 1.0), maximize=True)
        play(player, search.objective(x), k=self.steps)
        search.finish(x.detach())

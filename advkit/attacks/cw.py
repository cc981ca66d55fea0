"""Carlini-Wagner L2 (2017): the smallest L2 perturbation that flips the decision, found with
Adam in tanh space on ``||x' - x||_2^2 + c * max(-margin, -kappa)`` and a per-sample binary
search on ``c``."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..core import OptimizerStep, Player, check_number, play
from ..progress import InnerStepBar, long_work_bar
from .base import Attack, AttackRun
from .losses import margin, succeeded

#: pixels are mapped into tanh's open range, so that x itself has a finite preimage
TANH_SQUEEZE = 1 - 1e-6


def to_tanh_space(x: Tensor) -> Tensor:
    """``w`` with ``(tanh(w) + 1) / 2 ~= x``: optimising ``w`` freely keeps ``x'`` inside [0, 1]."""
    return torch.atanh((2 * x - 1) * TANH_SQUEEZE)


def from_tanh_space(w: Tensor) -> Tensor:
    return (torch.tanh(w) + 1) / 2


class Smallest:
    """Each sample's smallest successful perturbation so far (``dist`` is inf until one is found)."""

    def __init__(self, x: Tensor):
        self.x_adv, self.dist = x.clone(), torch.full((len(x),), math.inf, device=x.device)

    def update(self, x_adv: Tensor, dist: Tensor, hit: Tensor, rows: Tensor | None = None) -> None:
        """Keep the rows of ``x_adv`` that are ``hit`` (adversarial) and closer than the best so far;
        ``rows``: the samples they belong to (default: all, in order)."""
        if rows is not None:
            keep = hit & (dist < self.dist[rows])
            self.dist[rows[keep]], self.x_adv[rows[keep]] = dist[keep], x_adv[keep]
            return
        better = hit & (dist < self.dist)
        self.dist = torch.where(better, dist, self.dist)
        self.x_adv = torch.where(better.view(-1, *([1] * (x_adv.ndim - 1))), x_adv, self.x_adv)


class CW(Attack):
    """Carlini-Wagner L2. ``eps=None`` (the default) is unbounded: the result is the smallest
    perturbation found; a finite ``eps`` clips it to the eps-ball (and the success is re-checked).

    Each of ``binary_steps`` searches runs ``steps`` Adam steps (learning rate ``lr``) from ``x``;
    ``c`` starts at ``c`` for every sample, then halves towards the last failure after a success
    and grows tenfold (or bisects) after a failure. ``kappa`` is the confidence margin a success
    needs. The defaults spend 500 gradient steps in all (benchmarks/README.md says why these).

    ``progress``: a bar over the Adam steps, shown once a call has run for a few seconds.
    """

    norms = ("l2",)
    supports_eot = True  # eot > 1: the margin term's gradient averaged over draws (AttackRun.expected)
    minimum_norm = True  # eps=None or math.inf: each sample's smallest perturbation found
    losses = ("margin",)
    settings = ("c", "kappa", "steps", "lr", "binary_steps")

    def __init__(self, model: nn.Module, eps: float | None = None, c: float = 1.0, kappa: float = 0.0,
                 steps: int = 100, lr: float = 0.1, binary_steps: int = 5, *, norm: str = "l2",
                 loss: str = "margin", progress: bool = True, **kwargs):
        """Carlini-Wagner L2 with a binary search over ``c``.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: None (unbounded: the smallest perturbation found) or an L2 budget the result is clipped to.
            c: the starting trade-off constant between the distance and the margin term.
            kappa: the confidence margin a success needs (>= 0).
            steps: Adam steps per search over ``c``.
            lr: Adam's learning rate.
            binary_steps: searches over ``c``.
            norm: ``"l2"`` (the only norm CW works in).
            loss: ``"margin"`` (the only loss CW climbs).
            progress: a bar over the Adam steps, shown once a call has run for a few seconds.
            **kwargs: ``targeted``, ``early_stop``, ``seed``, ``amp``, ``eot``: see
                :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, norm=norm, loss=loss, **kwargs)
        self.c = check_number(c, "c")
        self.kappa = check_number(kappa, "kappa", low_open=False)
        self.lr = check_number(lr, "lr")
        self.steps = check_number(steps, "steps", low=1, low_open=False, integer=True)
        self.binary_steps = check_number(binary_steps, "binary_steps", low=1, low_open=False, integer=True)
        self.progress = bool(progress)

    def perturb(self, run: AttackRun) -> None:
        run.forward_clean()
        todo = (~run.success).nonzero().squeeze(1)  # samples the model already gets wrong need nothing
        if len(todo) == 0:
            return
        x, labels = run.x[todo], run.labels[todo]
        best = Smallest(x)
        c = torch.full((len(x),), float(self.c), device=x.device)
        lower, upper = torch.zeros_like(c), torch.full_like(c, math.inf)
        with long_work_bar(self.binary_steps * self.steps, "CW", self.progress, unit="step") as bar:
            shown = InnerStepBar(bar)
            for _ in range(self.binary_steps):
                found = torch.zeros_like(c, dtype=torch.bool)
                w = to_tanh_space(x).requires_grad_(True)
                adam = OptimizerStep(torch.optim.Adam([w], lr=self.lr))
                play(Player([w], adam, maximize=False), self._objective(run, w, x, labels, c, best, found),
                     k=self.steps, hooks=[shown])
                shown.flush()
                lower = torch.where(found, lower, torch.maximum(lower, c))
                upper = torch.where(found, torch.minimum(upper, c), upper)
                c = torch.where(upper < math.inf, (lower + upper) / 2, c * 10)
        run.best[todo] = best.x_adv
        run.success[todo] = best.dist < math.inf

    def _objective(self, run: AttackRun, w: Tensor, x: Tensor, labels: Tensor, c: Tensor, best: Smallest,
                   found: Tensor) -> Callable[[], Tensor]:
        """``sum ||x' - x||^2 + c * max(-margin, -kappa)``, recording every successful iterate. With
        ``eot`` > 1 the margin term is averaged over that many forwards and an iterate succeeds only
        where every draw does."""

        def term(logits: Tensor) -> tuple[Tensor, Tensor]:
            m = margin(logits, labels, run.targeted)
            hit = succeeded(logits.detach(), labels, run.targeted) & (m.detach() >= self.kappa)
            return c * (-m).clamp_min(-self.kappa), hit

        def loss() -> Tensor:
            x_adv = from_tanh_space(w)
            dist2 = (x_adv - x).flatten(1).pow(2).sum(1)
            out, _, hit = run.expected(x_adv, term)  # eot 1: the term of one forward, as is
            with torch.no_grad():
                best.update(x_adv.detach(), dist2.detach().sqrt(), hit)
                found.logical_or_(hit)
            return dist2.sum() + out

        return loss

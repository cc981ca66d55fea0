"""Square Attack (Andriushchenko et al. 2020), L-inf: gradient-free random search. Each query
redraws one random square window of the perturbation to +-eps per channel and keeps it where
the margin loss improves; the square shrinks on a fixed schedule."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Attack, Run

#: Iterations (on the paper's 10,000-query scale) after which the square's area halves.
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
MAX_REDRAWS = 100


def fraction(p_init: float, i: int, n_queries: int) -> float:
    """The share of pixels the square covers at iteration ``i``: ``p_init`` halved at each of
    :data:`HALVINGS` passed, the schedule rescaled to ``n_queries``."""
    i = int(i / n_queries * 10000)
    return p_init / 2 ** sum(i > h for h in HALVINGS)


def window_side(p: float, h: int, w: int) -> tuple[int, int]:
    """Height and width of the window: a square of area ``p*h*w`` with side in [1, h-1]; for flat
    inputs (h = 1) a segment of ``p*w`` entries."""
    if h == 1:
        return 1, min(max(round(p * w), 1), max(w - 1, 1))
    s = min(max(round(math.sqrt(p * h * w)), 1), h - 1, w)
    return s, s


def as_images(t: Tensor) -> Tensor:
    """(N, C, H, W) as is; a flat batch (N, D) as (N, 1, 1, D)."""
    return t if t.ndim == 4 else t.view(len(t), 1, 1, -1)


class Square(Attack):
    """Square Attack in L-inf: at most ``n_queries`` model queries per sample (one of them the
    vertical-stripe start), only for the samples not yet fooled. ``p_init`` is the share of pixels
    the first squares change. The default loss is the margin, as in the paper.
    """

    norms = ("linf",)

    def __init__(self, model: nn.Module, eps: float, n_queries: int = 5000, p_init: float = 0.8, *,
                 norm: str = "linf", loss: str = "margin", **kwargs):
        super().__init__(model, eps, norm=norm, loss=loss, **kwargs)
        if n_queries < 1 or not 0 < p_init <= 1:
            raise ValueError(f"need n_queries >= 1 and 0 < p_init <= 1, got n_queries={n_queries}, p_init={p_init}")
        self.n_queries, self.p_init = n_queries, p_init

    def perturb(self, run: Run) -> None:
        run.clean()
        for i in range(self.n_queries):
            idx = self._survivors(run)
            if len(idx) == 0:
                return
            p = fraction(self.p_init, i, self.n_queries)
            self._query(run, idx, self._stripes(run, idx) if i == 0 else self._square(run, idx, p))

    @staticmethod
    def _survivors(run: Run) -> Tensor:
        """Indices of the samples still to query (all of them without early stopping)."""
        idx = run.active()
        return torch.arange(len(run.x), device=run.x.device) if idx is None else idx

    @staticmethod
    def _signs(run: Run, shape: tuple[int, ...]) -> Tensor:
        """Uniform random +-1 of ``shape`` from the run's generator (so a seed fixes the search)."""
        g = run.generator
        return torch.randint(0, 2, shape, generator=g, device=g.device).to(run.x.device, run.x.dtype) * 2 - 1

    def _stripes(self, run: Run, idx: Tensor) -> Tensor:
        """The start: each column of each channel at +-eps (vertical stripes)."""
        x = as_images(run.x[idx])
        n, c, _, w = x.shape
        return (x + run.eps * self._signs(run, (n, c, 1, w))).clamp(0, 1).view_as(run.x[idx])

    def _square(self, run: Run, idx: Tensor, p: float) -> Tensor:
        """The current best with one random window (the same place for the batch) redrawn to
        ``x +- eps`` per sample and channel, redrawing the signs until the window changes."""
        x, best = as_images(run.x[idx]), as_images(run.best[idx])
        n, c, h, w = x.shape
        sh, sw = window_side(p, h, w)
        top, left = (int(torch.randint(0, size - side + 1, (1,), generator=run.generator, device=run.generator.device))
                     for size, side in ((h, sh), (w, sw)))
        win = (slice(None), slice(None), slice(top, top + sh), slice(left, left + sw))
        signs = self._signs(run, (n, c, 1, 1))
        for _ in range(MAX_REDRAWS):
            patch = (x[win] + run.eps * signs).clamp(0, 1)
            same = (patch - best[win]).abs().flatten(1).amax(1) < 1e-7
            if not bool(same.any()):
                break
            signs = torch.where(same.view(-1, 1, 1, 1), self._signs(run, (n, c, 1, 1)), signs)
        x_new = best.clone()
        x_new[win] = patch
        return x_new.view_as(run.x[idx])

    @staticmethod
    @torch.no_grad()
    def _query(run: Run, idx: Tensor, x_new: Tensor) -> None:
        """One query per sample; :meth:`Run.observe` keeps ``x_new`` where the loss improves."""
        logits = run.logits(x_new)
        run.observe(idx, x_new, logits, run.loss_fn(logits, run.labels[idx], run.targeted))

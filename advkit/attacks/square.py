"""Square Attack (Andriushchenko et al. 2020): gradient-free random search in square windows,
keeping each proposal where the margin loss improves; the square shrinks on a fixed schedule.

L-inf: each query redraws one window of the perturbation to +-eps per channel. L2: each query
moves the perturbation's mass from a second window into the first, reshaped as a signed
pseudo-Gaussian "dipole", and rescales the whole perturbation to norm eps. L1 (the authors' code for
"Mind the box", Croce & Hein 2021): the same move with a sharper dipole (weights 1/(k+1)^4, unit L1
mass), window 1 taking window 2's mass and the unused budget, and the exact projection onto the L1
ball (radius eps (1 - 1e-6)) and the box in place of the rescaling."""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from ..core import Box, check_number, flat_norm
from ..progress import long_work_bar
from .base import Attack, AttackRun

#: Iterations (on the paper's 10,000-query scale) after which the square's area halves.
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
MAX_REDRAWS = 100
#: Queries between progress-bar updates.
BAR_EVERY = 100


def fraction(p_init: float, i: int, n_queries: int, rescale: bool = True) -> float:
    """The share of pixels the square covers at iteration ``i``: ``p_init`` halved at each of
    :data:`HALVINGS` passed, the schedule rescaled to ``n_queries`` (or not, with ``rescale=False``)."""
    if rescale:
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


def bump(h: int, w: int, l1: bool = False) -> Tensor:
    """A pseudo-Gaussian bump on an ``h x w`` rectangle, unit L2 norm (``l1``: unit L1 norm): the pixel
    at Chebyshev distance d from the centre weighs sum_{k >= d} 1/(k+1)^2 (``l1``: 1/(k+1)^4, a sharper
    peak), so the mass gathers in the middle."""
    k = max(h, w) // 2 + 1
    power = 4 if l1 else 2
    tail = (1.0 / torch.arange(1, k + 1, dtype=torch.float64) ** power).flip(0).cumsum(0).flip(0)  # tail[d]
    rows, cols = (torch.arange(n) - n // 2 for n in (h, w))
    d = torch.maximum(rows.abs()[:, None], cols.abs()[None, :])
    out = tail[d]
    return (out / out.norm(p=1 if l1 else 2)).float()


@functools.lru_cache(maxsize=128)
def dipole(h: int, w: int, transpose: bool = False, l1: bool = False) -> Tensor:
    """The L2 proposal's shape: +bump on one half of the ``h x w`` window and -bump on the other
    (split across rows, or across columns when ``transpose`` or the window is one row), unit norm
    (``l1``: the L1 bumps, unit L1 norm). Cached: the search asks for the same few shapes at every
    query (callers must not modify it)."""
    if h == 1 or transpose:
        half = w // 2
        out = torch.cat([bump(h, half, l1), -bump(h, w - half, l1)], 1) if half else bump(h, w, l1)
    else:
        half = h // 2
        out = torch.cat([bump(half, w, l1), -bump(h - half, w, l1)], 0)
    return out / out.norm(p=1 if l1 else 2)


def channel_norms(t: Tensor, l1: bool = False) -> Tensor:
    """L2 norm (``l1``: L1 norm) over each (sample, channel) of an (N, C, H, W) tensor, shaped (N, C, 1, 1)."""
    return t.flatten(2).norm(p=1 if l1 else 2, dim=2)[:, :, None, None]


class Square(Attack):
    """Square Attack in L-inf, L2 or L1: at most ``n_queries`` model queries per sample (one of them
    the start: vertical stripes in L-inf, a tiling of dipoles in L2 and L1), only for the samples not
    yet fooled. ``p_init`` is the share of pixels the first squares change; the schedule that shrinks
    it is stretched to ``n_queries`` unless ``rescale=False`` (AutoAttack's setting). The default loss
    is the margin, as in the paper. ``progress``: a bar over the queries, shown once a call has run
    for a few seconds.
    """

    norms = ("linf", "l2", "l1")
    uses_gradients = False  # queries the model's outputs alone
    settings = ("n_queries", "p_init", "rescale")

    def __init__(self, model: nn.Module, eps: float, n_queries: int = 5000, p_init: float = 0.8, *,
                 norm: str = "linf", loss: str = "margin", rescale: bool = True, progress: bool = True, **kwargs):
        """Square Attack (Andriushchenko et al. 2020), gradient-free.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget (no default).
            n_queries: the most model queries per sample, the start included.
            p_init: the share of pixels the first squares change (in (0, 1]).
            norm: ``"linf"``, ``"l2"`` or ``"l1"``.
            loss: ``"margin"`` (the paper's) or another of :attr:`losses`.
            rescale: stretch the paper's 10,000-query schedule of the square's size to ``n_queries``
                (the official standalone default); False follows it query by query, as the official
                AutoAttack runs Square.
            progress: a bar over the queries, shown once a call has run for a few seconds.
            **kwargs: ``targeted``, ``early_stop``, ``seed``, ``amp``: see :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, norm=norm, loss=loss, **kwargs)
        self.n_queries = check_number(n_queries, "n_queries", low=1, low_open=False, integer=True)
        self.p_init = check_number(p_init, "p_init", high=1)
        if not isinstance(rescale, bool):
            raise TypeError(f"rescale must be True or False, got {rescale!r}")
        self.rescale = rescale
        self.progress = bool(progress)

    def perturb(self, run: AttackRun) -> None:
        run.forward_clean()
        # the norm's first proposal and its proposal at each later query
        start, propose = (self._stripes, self._square) if self.norm == "linf" else (self._tiles, self._move_mass)
        with long_work_bar(self.n_queries, "Square", self.progress, unit="query") as bar:
            for i in range(self.n_queries):
                idx = self._survivors(run)
                if len(idx) == 0:
                    return
                p = fraction(self.p_init, i, self.n_queries, self.rescale)
                self._query(run, idx, start(run, idx) if i == 0 else propose(run, idx, p))
                if (i + 1) % BAR_EVERY == 0:
                    bar.update(BAR_EVERY)
                    bar.set_postfix(active=len(idx), refresh=False)

    @staticmethod
    def _survivors(run: AttackRun) -> Tensor:
        """Indices of the samples still to query (all of them without early stopping)."""
        idx = run.active()
        return torch.arange(len(run.x), device=run.x.device) if idx is None else idx

    @staticmethod
    def _signs(run: AttackRun, shape: tuple[int, ...]) -> Tensor:
        """Uniform random +-1 of ``shape`` from the run's generator (so a seed fixes the search)."""
        g = run.generator
        return torch.randint(0, 2, shape, generator=g, device=g.device).to(run.x.device, run.x.dtype) * 2 - 1

    def _stripes(self, run: AttackRun, idx: Tensor) -> Tensor:
        """The start: each column of each channel at +-eps (vertical stripes)."""
        x = as_images(run.x[idx])
        n, c, _, w = x.shape
        return (x + run.eps * self._signs(run, (n, c, 1, w))).clamp(0, 1).view_as(run.x[idx])

    def _square(self, run: AttackRun, idx: Tensor, p: float) -> Tensor:
        """The current best with one random window (the same place for the batch) redrawn to
        ``x +- eps`` per sample and channel, redrawing the signs until the window changes."""
        x, best = as_images(run.x[idx]), as_images(run.best[idx])
        n, c, h, w = x.shape
        win = self._window(run, h, w, *window_side(p, h, w))
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

    def _tiles(self, run: AttackRun, idx: Tensor) -> Tensor:
        """The L2 and L1 start: the image tiled with dipoles (side h/5) of random sign per channel and
        random orientation, brought to the budget (:meth:`_place`)."""
        x = as_images(run.x[idx])
        n, c, h, w = x.shape
        sh, sw = (1, max(w // 5, 1)) if h == 1 else (max(h // 5, 1),) * 2
        delta = torch.zeros_like(x)
        for top in range((h % sh) // 2, h - sh + 1, sh):
            for left in range((w % sw) // 2, w - sw + 1, sw):
                pattern = dipole(sh, sw, self._coin(run), self.norm == "l1").to(x)
                delta[:, :, top:top + sh, left:left + sw] = pattern * self._signs(run, (n, c, 1, 1))
        return self._place(run, x, delta).view_as(run.x[idx])

    def _move_mass(self, run: AttackRun, idx: Tensor, p: float) -> Tensor:
        """The L2 and L1 proposal: window 1 gets a signed dipole plus its current content (each of unit
        norm per channel), rescaled to hold window 1's and window 2's mass and the budget still unused;
        window 2 is emptied. The two windows have an odd side >= 3, at random places. Under L2 the mass
        is the squared norm per channel; under L1 the L1 norm, each channel given the unused budget
        and C times the windows' (as the authors' code; the projection then trims the excess)."""
        l1 = self.norm == "l1"
        x, best = as_images(run.x[idx]), as_images(run.best[idx])
        n, c, h, w = x.shape
        delta = best - x
        sh, sw = window_side(p, h, w)
        sh, sw = (1, min(max(sw, 3), w)) if h == 1 else (min(max(sh, 3) | 1, h, w),) * 2
        w1, w2 = self._window(run, h, w, sh, sw), self._window(run, h, w, sh, sw)
        both = torch.zeros_like(x, dtype=torch.bool)
        both[w1] = both[w2] = True
        if l1:
            unused = (run.eps - self.geometry.distance(delta)).clamp_min(0).view(-1, 1, 1, 1) / c
            budget = (unused + channel_norms(delta * both, l1=True)) * c
        else:
            unused = (run.eps ** 2 - flat_norm(delta) ** 2).clamp_min(0) / c
            budget = (unused + channel_norms(delta * both) ** 2).sqrt()
        shape = dipole(sh, sw, self._coin(run), l1).to(x) * self._signs(run, (n, c, 1, 1))
        new = shape + delta[w1] / channel_norms(delta[w1], l1).clamp_min(1e-12)
        new = new / channel_norms(new, l1).clamp_min(1e-12) * budget
        delta[w2] = 0
        delta[w1] = new
        return self._place(run, x, delta).view_as(run.x[idx])

    @staticmethod
    def _coin(run: AttackRun) -> bool:
        """A fair coin from the run's generator (a dipole's orientation)."""
        return bool(torch.randint(0, 2, (1,), generator=run.generator, device=run.generator.device))

    @staticmethod
    def _window(run: AttackRun, h: int, w: int, sh: int, sw: int) -> tuple[slice, ...]:
        """An ``sh x sw`` window at a uniformly random place (the same for the whole batch)."""
        g = run.generator
        top, left = (int(torch.randint(0, size - side + 1, (1,), generator=g, device=g.device))
                     for size, side in ((h, sh), (w, sw)))
        return slice(None), slice(None), slice(top, top + sh), slice(left, left + sw)

    def _place(self, run: AttackRun, x: Tensor, delta: Tensor) -> Tensor:
        """L2: ``x + delta`` with delta rescaled to norm eps, clipped to [0, 1]. L1: ``x + delta``
        projected exactly onto the L1 ball of radius ``eps (1 - 1e-6)`` and the box."""
        if self.norm == "l1":
            out = x + delta
            (self.geometry.ball(x, run.eps * (1 - 1e-6)) & Box(0.0, 1.0))(out)
            return out
        return (x + delta * (run.eps / flat_norm(delta).clamp_min(1e-12))).clamp(0, 1)

    @staticmethod
    @torch.no_grad()
    def _query(run: AttackRun, idx: Tensor, x_new: Tensor) -> None:
        """One query per sample; :meth:`AttackRun.observe` keeps ``x_new`` where the loss improves."""
        logits = run.logits(x_new)
        run.observe(idx, x_new, logits, run.loss_fn(logits, run.labels[idx], run.targeted))

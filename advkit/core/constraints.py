"""Constraints as in-place projections: the feasible set of a player.

A projection maps a tensor onto its set in place (under ``torch.no_grad``). Sets combine with
``&``: ``LinfBall(x, eps) & Box(0, 1)`` is the exact projection onto the intersection (both are
boxes, so one clamp does it); other intersections project onto each set in turn, which for an
L2 ball followed by the [0, 1] box still lands in both because ``x`` itself lies in the box.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

Bound = float | Tensor


def per_sample(value: Bound, like: Tensor) -> Bound:
    """A scalar stays a float; a per-sample tensor of shape (N,) is viewed to broadcast over ``like``."""
    if isinstance(value, Tensor) and value.ndim == 1 and like.ndim > 1:
        return value.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))
    return value


def flat_norm(t: Tensor, p: float = 2.0) -> Tensor:
    """Per-sample p-norm over all but the first dimension, shaped to broadcast against ``t``."""
    norms = t.flatten(1).norm(p=p, dim=1)
    return norms.view(-1, *([1] * (t.ndim - 1)))


class Projection:
    """Base class: ``proj(t)`` projects ``t`` onto the set in place; ``a & b`` intersects."""

    def __call__(self, t: Tensor) -> None:
        raise NotImplementedError

    def __and__(self, other: "Projection") -> "Projection":
        return Intersection(self, other)


class Identity(Projection):
    """The unconstrained set: does nothing."""

    def __call__(self, t: Tensor) -> None:
        return None


class Box(Projection):
    """Elementwise bounds ``lo <= t <= hi``; bounds may be floats or broadcastable tensors."""

    def __init__(self, lo: Bound = 0.0, hi: Bound = 1.0):
        self.lo, self.hi = lo, hi

    def __call__(self, t: Tensor) -> None:
        t.clamp_(min=self.lo, max=self.hi)

    def __and__(self, other: Projection) -> Projection:
        if isinstance(other, Box):
            return Box(_tighter(self.lo, other.lo, lower=True), _tighter(self.hi, other.hi, lower=False))
        return super().__and__(other)


class LinfBall(Box):
    """``||t - center||_inf <= eps`` (eps a float or per-sample tensor): a box around ``center``."""

    def __init__(self, center: Tensor, eps: Bound):
        self.center, self.eps = center, per_sample(eps, center)
        super().__init__(center - self.eps, center + self.eps)


class L2Ball(Projection):
    """``||t - center||_2 <= eps`` per sample; never divides by zero (eps = 0 gives the center)."""

    def __init__(self, center: Tensor, eps: Bound):
        self.center, self.eps = center, per_sample(eps, center)

    def __call__(self, t: Tensor) -> None:
        delta = t - self.center
        norm = flat_norm(delta)
        scale = torch.where(norm > self.eps, self.eps / norm.clamp_min(1e-12), torch.ones_like(norm))
        t.copy_(self.center + delta * scale)


class Intersection(Projection):
    """Projects onto each set in turn (exact when the later sets keep the earlier ones)."""

    def __init__(self, *parts: Projection):
        self.parts: Sequence[Projection] = parts

    def __call__(self, t: Tensor) -> None:
        for part in self.parts:
            part(t)


class WeightClip(Projection):
    """WGAN's weight clipping: every entry into ``[-c, c]``."""

    def __init__(self, c: float):
        self.c = c

    def __call__(self, t: Tensor) -> None:
        t.clamp_(-self.c, self.c)


def _tighter(a: Bound, b: Bound, lower: bool) -> Bound:
    """The tighter of two bounds: the larger lower bound or the smaller upper bound."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return max(a, b) if lower else min(a, b)
    ref = a if isinstance(a, Tensor) else b
    a, b = (torch.as_tensor(v, device=ref.device, dtype=ref.dtype) for v in (a, b))
    return torch.maximum(a, b) if lower else torch.minimum(a, b)

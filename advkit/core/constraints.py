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


class L1Ball(Projection):
    """``||t - center||_1 <= eps`` per sample, optionally intersected with the box ``lo <= t <= hi``
    (``L1Ball(x, eps) & Box(lo, hi)``), projected exactly (the center must lie in the box).

    Per coordinate the projection of ``delta = t - center`` is ``sign(delta_i) * clamp(|delta_i| - lam,
    0, room_i)``, ``room_i`` the distance from the center to the bound ``delta_i`` points at (infinite
    without a box): soft thresholding clipped to the box, the exact minimiser because the box holds
    0. ``lam >= 0`` is the smallest value that brings the L1 norm to eps: the norm is piecewise linear
    and decreasing in ``lam`` with breakpoints ``|delta_i| - room_i`` and ``|delta_i|``, so sorting
    them locates ``lam`` exactly (Croce & Hein 2021, "Mind the box"). Solved in float64; a last
    rescaling absorbs the rounding, so the result is never outside the ball or the box.
    """

    def __init__(self, center: Tensor, eps: Bound, lo: Bound | None = None, hi: Bound | None = None):
        self.center, self.eps, self.lo, self.hi = center, eps, lo, hi

    def __and__(self, other: Projection) -> Projection:
        if isinstance(other, Box):
            lo = other.lo if self.lo is None else _tighter(self.lo, other.lo, lower=True)
            hi = other.hi if self.hi is None else _tighter(self.hi, other.hi, lower=False)
            return L1Ball(self.center, self.eps, lo, hi)
        return super().__and__(other)

    def __call__(self, t: Tensor) -> None:
        n = len(t)
        center = self.center.expand_as(t).reshape(n, -1).double()
        delta = t.reshape(n, -1).double() - center
        a = delta.abs()
        room = torch.full_like(a, float("inf"))
        if self.hi is not None:
            room = torch.where(delta > 0, _flat(self.hi, t) - center, room)
        if self.lo is not None:
            room = torch.where(delta < 0, center - _flat(self.lo, t), room)
        room = room.clamp_min(0)
        eps = torch.as_tensor(self.eps, dtype=a.dtype, device=a.device).reshape(-1, 1).expand(n, 1)
        d = _l1_box_solve(a, room, eps)
        norm = d.sum(1, keepdim=True)
        d = d * torch.where(norm > eps, eps / norm.clamp_min(1e-300), torch.ones_like(norm))  # rounding only
        out = (center + torch.sign(delta) * d).to(t.dtype)
        if self.lo is not None or self.hi is not None:  # float32 rounding of center + d may step past a bound
            out = out.view_as(t).clamp(min=self.lo if self.lo is not None else None,
                                       max=self.hi if self.hi is not None else None).reshape(n, -1)
        t.copy_(out.view_as(t))


def _flat(bound: Bound, like: Tensor) -> Tensor:
    """A bound (a float or a tensor broadcastable to ``like``) as float64, (N, D) or a scalar."""
    if not isinstance(bound, Tensor):
        return torch.tensor(float(bound), dtype=torch.float64, device=like.device)
    return bound.to(like.device).expand_as(like).reshape(len(like), -1).double()


def _l1_box_solve(a: Tensor, room: Tensor, eps: Tensor) -> Tensor:
    """Per row, ``clamp(a - lam, 0, room)`` for the smallest ``lam >= 0`` whose row sum is at most ``eps``
    (``a``, ``room``: (N, D) float64, ``room`` may be infinite; ``eps``: (N, 1))."""
    kept = torch.minimum(a, room)
    total = kept.sum(1, keepdim=True)
    over = (total > eps).squeeze(1)
    if not bool(over.any()):
        return kept
    a, room, e, t0 = a[over], room[over], eps[over], total[over]
    # a coordinate shrinks (slope -1 in lam) between its start max(a - room, 0) and its end a
    start, end = (a - room).clamp_min(0), a
    points = torch.cat([start, end], 1)
    slope_change = torch.cat([torch.ones_like(a), -torch.ones_like(a)], 1)
    points, order = points.sort(1)
    shrinking = slope_change.gather(1, order).cumsum(1)  # coordinates shrinking just after each point
    gaps = points.diff(dim=1, prepend=torch.zeros_like(points[:, :1]))
    before = torch.cat([torch.zeros_like(shrinking[:, :1]), shrinking[:, :-1]], 1)
    value = t0 - (gaps * before).cumsum(1)  # the row sum at each point
    k = (value > e).sum(1, keepdim=True).clamp_max(points.shape[1] - 1)  # first point at or below eps
    prev_point = torch.where(k > 0, points.gather(1, (k - 1).clamp_min(0)), torch.zeros_like(e))
    prev_value = torch.where(k > 0, value.gather(1, (k - 1).clamp_min(0)), t0)
    rate = torch.where(k > 0, shrinking.gather(1, (k - 1).clamp_min(0)), torch.zeros_like(e)).clamp_min(1)
    lam = prev_point + (prev_value - e) / rate
    out = torch.empty_like(kept)
    out[~over] = kept[~over]
    out[over] = (a - lam).clamp_min(0).minimum(room)
    return out


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

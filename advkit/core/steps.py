"""Step rules: how a player moves its parameters given their gradients.

A step rule is called as ``rule(params, grads, ascend)`` under ``torch.no_grad`` and updates the
parameters in place; ``ascend=True`` climbs the objective (the inner, max player). Step sizes
may be floats or per-sample tensors of shape (N,) (attacks use that for per-sample schedules).
"""
from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import Tensor

from .constraints import Bound, flat_norm, per_sample
from .numbers import check_number


class StepRule(Protocol):
    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor], ascend: bool) -> None: ...


def step_size(alpha: Bound, name: str = "alpha") -> Bound:
    """A step size: a finite float > 0 (checked here), or a per-sample tensor (its owner keeps it valid)."""
    return alpha if isinstance(alpha, Tensor) else check_number(alpha, name)


def move(p: Tensor, direction: Tensor, size: Bound, ascend: bool) -> None:
    """``p += size * direction`` (or ``-=`` when descending); ``size`` a float or per-sample tensor."""
    size = per_sample(size, p)
    sign = 1.0 if ascend else -1.0
    if isinstance(size, Tensor):
        p.addcmul_(size, direction, value=sign)
    else:
        p.add_(direction, alpha=sign * size)


class SignStep:
    """``p += alpha * sign(g)``: steepest ascent under the L-inf norm (FGSM, PGD-Linf)."""

    def __init__(self, alpha: Bound):
        self.alpha = step_size(alpha)

    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor], ascend: bool) -> None:
        for p, g in zip(params, grads, strict=True):
            move(p, g.sign(), self.alpha, ascend)


class L2Step:
    """``p += alpha * g / ||g||_2`` per sample: steepest ascent under the L2 norm (PGD-L2).

    A zero gradient gives a zero step, never NaN.
    """

    def __init__(self, alpha: Bound):
        self.alpha = step_size(alpha)

    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor], ascend: bool) -> None:
        for p, g in zip(params, grads, strict=True):
            move(p, g / flat_norm(g).clamp_min(1e-12), self.alpha, ascend)


class L1Step:
    """Sparse steepest ascent under the L1 norm: ``p += alpha * s / ||s||_1`` per sample, ``s`` the
    sign of the gradient on its ``sparsity`` share of coordinates largest in magnitude (ties at the
    threshold included), zero elsewhere (APGD-L1's step; one coordinate is the exact steepest ascent).

    ``sparsity``: a share in (0, 1] or a per-sample (N,) tensor of shares; at least one coordinate
    moves. ``box``: ``(low, high)`` bounds of the parameters, or None; with bounds, a coordinate on a
    bound whose step would leave the box is left out of the choice (its share goes to coordinates
    that can move, where a projection back onto the box would waste it). A zero gradient gives a
    zero step, never NaN.
    """

    def __init__(self, alpha: Bound, sparsity: Bound, box: tuple[float, float] | None = None):
        self.alpha = step_size(alpha)
        self.sparsity = sparsity if isinstance(sparsity, Tensor) else check_number(
            sparsity, "sparsity", high=1.0)
        self.box = box

    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor], ascend: bool) -> None:
        for p, g in zip(params, grads, strict=True):
            if self.box is not None:
                up = g > 0 if ascend else g < 0  # the coordinates this step would raise
                g = g.masked_fill((up & (p >= self.box[1])) | (~up & (g != 0) & (p <= self.box[0])), 0)
            move(p, sparse_sign(g, self.sparsity), self.alpha, ascend)


def sparse_sign(g: Tensor, sparsity: Bound) -> Tensor:
    """``sign(g)`` on each sample's ``sparsity`` share of largest-magnitude coordinates, scaled to L1
    norm 1 (zero where ``g`` is)."""
    flat = g.flatten(1).abs()
    dim = flat.shape[1]
    share = torch.as_tensor(sparsity, dtype=torch.float64, device=g.device).reshape(-1).expand(len(g))
    k = (share * dim).ceil().clamp(1, dim).long()  # coordinates kept per sample
    threshold = flat.sort(1, descending=True).values.gather(1, (k - 1)[:, None])
    s = torch.sign(g) * (flat >= threshold).view_as(g)
    return s / flat_norm(s, p=1).clamp_min(1e-12)


class OptimizerStep:
    """A ``torch.optim`` optimizer's step: the gradients are handed over through ``.grad``
    for the duration of the step only, so no ``.grad`` is left behind."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor], ascend: bool) -> None:
        for p, g in zip(params, grads, strict=True):
            p.grad = -g if ascend else g
        self.optimizer.step()
        for p in params:
            p.grad = None

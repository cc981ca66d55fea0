"""BPDA (Athalye et al. 2018, Backward Pass Differentiable Approximation): a transform that runs as itself
forward and as a differentiable stand-in backward.

A defense that preprocesses its input with a non-differentiable step (JPEG, bit-depth reduction,
quantisation) has a zero or useless input gradient, so gradient attacks stall on it. ``BPDA(transform)`` is
a module with exactly ``transform``'s outputs whose backward pass is the gradient of ``approx`` at the same
input (identity by default: the transform is close to the identity, so its Jacobian is taken as I). Put it
where the transform stands, ``nn.Sequential(BPDA(JPEG(50)), model)``: every gradient attack and ``evaluate``
then run unchanged on a model whose predictions, and so whose accuracies, are the defended model's.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Transform = Callable[[Tensor], Tensor]


class _Substitute(torch.autograd.Function):
    """Forward: ``transform(x)``; backward: the vector-Jacobian product of ``approx`` at ``x``
    (the incoming gradient itself when ``approx`` is None, the identity)."""

    @staticmethod
    def forward(ctx, x: Tensor, transform: Transform, approx: Transform | None) -> Tensor:
        ctx.approx = approx
        if approx is not None:
            ctx.save_for_backward(x)
        return transform(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None]:
        if ctx.approx is None:
            return grad, None, None
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (out,) = torch.autograd.grad(ctx.approx(x), x, grad)
        return out, None, None


class BPDA(nn.Module):
    """``transform`` forward, ``approx``'s gradient backward (Athalye et al. 2018).

    The output is ``transform(x)`` exactly; the gradient with respect to ``x`` is that of
    ``approx(x)`` at the same ``x`` (``approx=None``: the identity, the straight-through estimate
    for a transform that approximately preserves its input, such as JPEG compression or bit-depth
    reduction). ``approx`` must map ``x`` to a tensor of ``transform(x)``'s shape; it is only
    differentiated, its value is never used.

    Why a module in front of the model rather than an attack option: a defended model is a
    transform followed by a classifier, and ART's preprocessing defenses likewise carry their own
    gradient estimate (identity by default) inside the model the attacks see. As a module BPDA
    composes with ``nn.Sequential``, with several transforms and with normalisation layers, and
    every gradient attack and ``advkit.evaluate`` run through it without knowing it is there.

    Args:
        transform: the preprocessing the defended model applies (a module or a function of a batch).
        approx: a differentiable stand-in whose gradient is used in the backward pass (a module or a
            function); None: the identity.
    """

    def __init__(self, transform: Transform, approx: Transform | None = None):
        super().__init__()
        if not callable(transform):
            raise TypeError(f"transform must be a module or a function of a batch, got {type(transform).__name__}")
        if approx is not None and not callable(approx):
            raise TypeError(f"approx must be None (the identity), a module or a function, got {type(approx).__name__}")
        self.transform, self.approx = transform, approx  # modules among them become submodules

    def forward(self, x: Tensor) -> Tensor:
        return _Substitute.apply(x, self.transform, self.approx)

    def extra_repr(self) -> str:
        return "approx=identity" if self.approx is None else ""


__all__ = ["BPDA"]

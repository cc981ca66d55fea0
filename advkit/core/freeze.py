"""Borrowing a model without changing it: what every attack runs inside."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def frozen(model: nn.Module, train: bool = False) -> Iterator[nn.Module]:
    """Put ``model`` in eval (or train) mode with gradients off for its parameters, and restore
    every module's mode and every parameter's ``requires_grad`` flag afterwards, even on error.

    Parameters, buffers and ``.grad`` are never written: with ``requires_grad`` off no gradient
    reaches them, and eval mode keeps BatchNorm's running statistics still.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.train(train)
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)

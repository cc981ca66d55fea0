"""Samples from a trained GAN: in eval mode, from the EMA generator when one is kept, with noise from
a generator of their own so that sampling never moves the training's random streams."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from ..core import frozen
from .ema import EMA
from .options import GANOptions


class Sampler(Protocol):
    """What sampling reads of a :class:`~advkit.gan.GANTrainer`: its options, generator, EMA and calls."""

    options: GANOptions
    G: nn.Module
    ema: EMA | None
    num_classes: int | None

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...

    def generate(self, z: Tensor, cond: Tensor | None, model: nn.Module | None = None) -> Tensor: ...


@torch.no_grad()
def sample(trainer: Sampler, n: int | None = None, labels: Tensor | None = None, condition: Tensor | None = None,
           seed: int | None = None, ema: bool = True, batch_size: int = 500) -> Tensor:
    """``n`` samples from ``trainer``'s generator (its EMA when kept and ``ema``), in eval mode, on the CPU.

    Args:
        trainer: the trainer whose generator samples.
        n: the number of samples (for an image-conditional trainer: default the number of ``condition``
            images).
        labels: a class-conditional trainer's labels, one per sample (default: 0, 1, ..., cycling over
            the classes).
        condition: an image-conditional trainer's condition images.
        seed: seeds the noise's own generator (default: the trainer's seed).
        ema: sample from the EMA of the generator when the trainer keeps one.
        batch_size: the samples generated per forward pass.
    """
    cond = condition_for(trainer, n, labels, condition)
    n = len(cond) if cond is not None else n
    if n is None or n < 0:
        raise ValueError(f"n must be a non-negative number of samples; got {n}")
    rng = torch.Generator().manual_seed(trainer.options.seed if seed is None else seed)
    model = trainer.ema.model if (ema and trainer.ema is not None) else trainer.G
    device = trainer.options.device
    with frozen(model):
        parts = [trainer.generate(trainer.noise(min(batch_size, n - i), rng),
                                  None if cond is None else cond[i:i + batch_size].to(device), model).cpu()
                 for i in range(0, n, batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)


def condition_for(trainer: Sampler, n: int | None, labels: Tensor | None,
                  condition: Tensor | None) -> Tensor | None:
    """What the generator is conditioned on for :func:`sample`: the labels (default 0, 1, ... cycling
    over the classes) or the condition images, checked against ``n``; None for an unconditional trainer.

    Args:
        trainer: the trainer whose ``conditional`` option decides.
        n: the number of samples asked for, or None.
        labels: the labels asked for, or None.
        condition: the condition images, or None.
    """
    conditional = trainer.options.conditional
    if conditional == "class":
        if labels is None:
            if n is None or not trainer.num_classes:
                raise ValueError("pass labels (or n, once the number of classes is known)")
            labels = torch.arange(n) % trainer.num_classes
        if n is not None and len(labels) != n:
            raise ValueError(f"labels must have n={n} entries; got {len(labels)}")
        return torch.as_tensor(labels, dtype=torch.long)
    if conditional == "image":
        if condition is None:
            raise ValueError("an image-conditional generator needs condition images")
        return condition
    return None


__all__ = ["Sampler", "condition_for", "sample"]

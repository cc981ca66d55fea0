"""What :meth:`GANTrainer.fit <advkit.gan.GANTrainer.fit>` trains on: the data split into the samples D
calls real and their conditions, checked against the trainer's conditioning and its models before any
training, each mistake a ValueError or TypeError that says what to change."""
from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from ..core import frozen
from ..data import as_tensors
from .options import GANOptions


class Players(Protocol):
    """What the checks read of a :class:`~advkit.gan.GANTrainer`: its options, networks and their calls."""

    options: GANOptions
    G: nn.Module
    D: nn.Module
    num_classes: int | None

    def generate(self, z: Tensor, cond: Tensor | None) -> Tensor: ...

    def judge(self, x: Tensor, cond: Tensor | None) -> Tensor: ...


def prepare(trainer: Players, data) -> tuple[Tensor, Tensor | None]:
    """(samples D must call real, condition or None), checked against the models, on the CPU. A
    class-conditional trainer that does not know its number of classes yet learns it from the labels.

    Args:
        trainer: the trainer about to fit.
        data: a Dataset, DataLoader or ``(x, y)`` pair (:func:`advkit.data.as_tensors`), read as the
            trainer's ``conditional`` option says.
    """
    x, y = as_tensors(data)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"data must hold as many samples as targets, at least one; got {len(x)} and {len(y)}")
    if not x.is_floating_point():
        raise TypeError(f"data samples must be floating point (images in [0, 1]); got {x.dtype}")
    if not torch.isfinite(x).all() or (y.is_floating_point() and not torch.isfinite(y).all()):
        raise ValueError("data holds NaN or Inf values")
    conditional = trainer.options.conditional
    if conditional is None:
        real, cond = x, None
    elif conditional == "class":
        if y.is_floating_point() or y.ndim != 1 or y.min() < 0:
            raise ValueError("conditional='class' needs non-negative integer labels of shape (N,)")
        classes = [n for n in (getattr(trainer.G, "num_classes", None), getattr(trainer.D, "num_classes", None)) if n]
        if classes and int(y.max()) >= min(classes):
            raise ValueError(f"data has label {int(y.max())} but the models know {min(classes)} classes (labels "
                             f"0..{min(classes) - 1}); build them with num_classes={int(y.max()) + 1} "
                             "or relabel the data")
        trainer.num_classes = trainer.num_classes or int(y.max()) + 1
        real, cond = x, y
    else:
        if not y.is_floating_point() or y.ndim != x.ndim:
            raise ValueError("conditional='image' needs data of (condition image, target image) pairs")
        real, cond = y, x
    check_models_fit(trainer, real, cond)
    return real, cond


def check_models_fit(trainer: Players, real: Tensor, cond: Tensor | None) -> None:
    """ValueError, before training, when G's samples differ in shape from the data's, the data leave
    the range G can produce (its ``output_range`` attribute, when it has one) or D cannot judge them.

    Args:
        trainer: the trainer whose G and D are checked.
        real: the samples D calls real.
        cond: their conditions (labels or condition images), or None.
    """
    G, D, device = trainer.G, trainer.D, trainer.options.device
    low, high = getattr(G, "output_range", (-math.inf, math.inf))
    tol = 1e-4
    if float(real.min()) < low - tol or float(real.max()) > high + tol:
        raise ValueError(f"the data's samples lie in [{float(real.min()):.3g}, {float(real.max()):.3g}] "
                         f"but the generator produces values in [{low}, {high}]; rescale the data to that range "
                         "(images in [0, 1])")
    c = None if cond is None else cond[:2].to(device)
    with frozen(G), frozen(D), torch.no_grad():
        try:
            fake = trainer.generate(torch.zeros(len(real[:2]), G.latent_dim, device=device), c)
        except (RuntimeError, IndexError) as err:
            raise ValueError(f"the generator fails on the data's conditions (shape {tuple(cond.shape[1:])}): "
                             f"{err}") from err
        if fake.shape[1:] != real.shape[1:]:
            raise ValueError(f"the generator makes samples of shape {tuple(fake.shape[1:])} but the data's "
                             f"samples have shape {tuple(real.shape[1:])}; build the models for the data (e.g. "
                             f"dcgan(channels=..., size=...)) or resize the data")
        try:
            trainer.judge(real[:2].to(device), c)
        except (RuntimeError, IndexError) as err:
            raise ValueError(f"the discriminator fails on the data's samples (shape {tuple(real.shape[1:])}): "
                             f"{err}") from err


__all__ = ["Players", "check_models_fit", "prepare"]

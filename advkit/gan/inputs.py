"""What :meth:`GANTrainer.fit <advkit.gan.GANTrainer.fit>` trains on: the data split into the samples D
calls real and their conditions, checked against the trainer's conditioning and its models before any
training, each mistake a ValueError or TypeError that says what to change."""
from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ..core import frozen
from ..data import Samples, as_tensors
from .options import GANOptions


class Players(Protocol):
    """What the checks read of a :class:`~advkit.gan.GANTrainer`: its options, networks and their calls."""

    options: GANOptions
    G: nn.Module
    D: nn.Module
    num_classes: int | None

    def generate(self, z: Tensor, cond: Tensor | None) -> Tensor: ...

    def judge(self, x: Tensor, cond: Tensor | None) -> Tensor: ...


def prepare(trainer: Players, data) -> Samples:
    """The data as :class:`advkit.data.Samples` whose reads are ``(samples D must call real, their
    conditions)`` (unconditional: the data's second entry, unused), checked against the models, on the
    CPU. Tensors in memory are checked whole now; a Dataset or DataLoader is checked on its first two
    samples now (the models' fit) and a batch at a time as it is read, never read whole. A
    class-conditional trainer that does not know its number of classes yet learns it from the labels
    (tensors in memory), or from its models' ``num_classes`` (read from a Dataset: else a ValueError).

    Args:
        trainer: the trainer about to fit.
        data: a Dataset, DataLoader or ``(x, y)`` pair (:class:`advkit.data.Samples`), read as the
            trainer's ``conditional`` option says.
    """
    if isinstance(data, (tuple, list, TensorDataset)):
        x, y = as_tensors(data)
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(f"data must hold as many samples as targets, at least one; got {len(x)} and {len(y)}")
        real, cond = _checked(trainer, x, y)
        if trainer.options.conditional == "class":
            trainer.num_classes = trainer.num_classes or int(y.max()) + 1
        check_models_fit(trainer, real, cond)
        return Samples((real, y if cond is None else cond))
    samples = Samples(data)
    if trainer.options.conditional == "class":
        trainer.num_classes = trainer.num_classes or min(_model_classes(trainer), default=None)
        if not trainer.num_classes:
            raise ValueError("conditional='class' on data read from a Dataset needs the number of classes: build "
                             "the generator with num_classes (the labels are not read ahead to count them)")
    real, cond = _checked(trainer, *samples.read(torch.arange(min(2, len(samples)))))
    check_models_fit(trainer, real, cond)

    def check(x: Tensor, y: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        real, cond = _checked(trainer, x, y)
        _check_range(trainer, real)
        return real, y if cond is None else cond

    return samples.map(check)


def _model_classes(trainer: Players) -> list[int]:
    """The numbers of classes the generator and discriminator declare."""
    return [n for n in (getattr(trainer.G, "num_classes", None), getattr(trainer.D, "num_classes", None)) if n]


def _checked(trainer: Players, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(real, cond)`` of a batch (or the whole data) once its values are what the trainer takes."""
    if not x.is_floating_point():
        raise TypeError(f"data samples must be floating point (images in [0, 1]); got {x.dtype}")
    if not torch.isfinite(x).all() or (y.is_floating_point() and not torch.isfinite(y).all()):
        raise ValueError("data holds NaN or Inf values")
    conditional = trainer.options.conditional
    if conditional is None:
        return x, None
    if conditional == "class":
        if y.is_floating_point() or y.ndim != 1 or y.min() < 0:
            raise ValueError("conditional='class' needs non-negative integer labels of shape (N,)")
        classes = _model_classes(trainer)
        if classes and int(y.max()) >= min(classes):
            raise ValueError(f"data has label {int(y.max())} but the models know {min(classes)} classes (labels "
                             f"0..{min(classes) - 1}); build them with num_classes={int(y.max()) + 1} "
                             "or relabel the data")
        return x, y
    if not y.is_floating_point() or y.ndim != x.ndim:
        raise ValueError("conditional='image' needs data of (condition image, target image) pairs")
    return y, x


def check_models_fit(trainer: Players, real: Tensor, cond: Tensor | None) -> None:
    """ValueError, before training, when G's samples differ in shape from the data's, the data leave
    the range G can produce (its ``output_range`` attribute, when it has one) or D cannot judge them.

    Args:
        trainer: the trainer whose G and D are checked.
        real: the samples D calls real.
        cond: their conditions (labels or condition images), or None.
    """
    G, D, device = trainer.G, trainer.D, trainer.options.device
    _check_range(trainer, real)
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


def _check_range(trainer: Players, real: Tensor) -> None:
    """ValueError when ``real`` leaves the range the generator can produce (its ``output_range``, if any)."""
    low, high = getattr(trainer.G, "output_range", (-math.inf, math.inf))
    tol = 1e-4
    if float(real.min()) < low - tol or float(real.max()) > high + tol:
        raise ValueError(f"the data's samples lie in [{float(real.min()):.3g}, {float(real.max()):.3g}] "
                         f"but the generator produces values in [{low}, {high}]; rescale the data to that range "
                         "(images in [0, 1])")


__all__ = ["Players", "check_models_fit", "prepare"]

"""Adversarial versions of a whole dataset, batch by batch (for adversarial test sets, transfer
experiments, or data augmentation)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from ..data import Samples
from ..devices import model_device
from ..rng import batch_seed
from .adapter import from_torchattacks, is_torchattacks
from .base import Attack


def generate(atk: Attack, data: Any, batch_size: int = 256, device: str | torch.device | None = None,
             progress: bool = True, n: int | None = None) -> TensorDataset:
    """``TensorDataset(x_adv, y)`` of ``atk`` applied to ``data`` (a Dataset, a DataLoader or an
    ``(x, y)`` pair), on the CPU, in the data's order.

    The data is read a batch at a time (:func:`generate_batches`), but the result is held whole: the
    adversarial images of all ``n`` samples as one float tensor (4 bytes a pixel: 12 GB for 20,000
    RGB 224x224 images), plus one batch being attacked. For more than fits in memory, iterate
    :func:`generate_batches` and write each batch out. Each batch runs on ``device`` (default: the
    device of the attack's model, so the model is never moved) with its own seed from
    :func:`advkit.rng.batch_seed`: the result does not depend on what ran before. A torchattacks
    attack is wrapped with :func:`from_torchattacks` first.

    Args:
        atk: an advkit attack or a torchattacks attack.
        data: a Dataset, a DataLoader or an ``(x, y)`` pair.
        batch_size: samples per attack call.
        device: where each batch runs (None: the attack's model's device).
        progress: show a progress bar.
        n: attack the first n samples (None: all); the others are never read.

    Returns:
        ``TensorDataset(x_adv, y)``, on the CPU.
    """
    total, done, x_adv, labels = len(Samples(data, limit=n)), 0, None, []
    for x, y in generate_batches(atk, data, batch_size, device, progress, n):
        if x_adv is None:  # filled in place: the result is held once, never beside its batches
            x_adv = torch.empty((total, *x.shape[1:]), dtype=x.dtype)
        x_adv[done:done + len(x)] = x
        done += len(x)
        labels.append(y)
    return TensorDataset(x_adv, torch.cat(labels))


def generate_batches(atk: Attack, data: Any, batch_size: int = 256, device: str | torch.device | None = None,
                     progress: bool = True, n: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """``(x_adv, y)`` of each batch of ``data`` in order, on the CPU, read and attacked one batch at a
    time when the iteration asks for it: the memory of one batch, whatever the data's size (write each
    batch out as it comes). The batches, their seeds and the arguments are :func:`generate`'s.

    Returns:
        An iterator over ``(x_adv, y)`` pairs, one per batch.
    """
    if is_torchattacks(atk):
        atk = from_torchattacks(atk)
    if not isinstance(atk, Attack):
        raise TypeError(f"atk must be an advkit Attack or a torchattacks attack, got {type(atk).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    samples = Samples(data, limit=n)
    device = model_device(atk.model) if device is None else torch.device(device)
    return _attacked(atk, samples, batch_size, device, progress)


def _attacked(atk: Attack, samples: Samples, batch_size: int, device: torch.device,
              progress: bool) -> Iterator[tuple[Tensor, Tensor]]:
    bar = tqdm(total=len(samples), desc=f"generate {type(atk).__name__}", disable=not progress, leave=False)
    for first, x, y in samples.batches(batch_size):
        x_adv = atk.run(x.to(device), y.to(device), seed=batch_seed(atk.seed, first // batch_size),
                        check_success=False).x_adv.cpu()
        bar.update(len(x))
        yield x_adv, y
    bar.close()

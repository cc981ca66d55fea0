"""Adversarial versions of a whole dataset, batch by batch (for adversarial test sets, transfer
experiments, or data augmentation)."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from ..data import as_tensors
from ..devices import model_device
from ..rng import batch_seed
from .adapter import from_torchattacks, is_torchattacks
from .base import Attack


def generate(atk: Attack, data: Any, batch_size: int = 256, device: str | torch.device | None = None,
             progress: bool = True) -> TensorDataset:
    """``TensorDataset(x_adv, y)`` of ``atk`` applied to ``data`` (a Dataset, a DataLoader or an
    ``(x, y)`` pair), on the CPU, in the data's order.

    Each batch runs on ``device`` (default: the device of the attack's model, so the model is
    never moved) with its own seed from :func:`advkit.rng.batch_seed`: the result does not depend on what ran
    before. A torchattacks attack is wrapped with :func:`from_torchattacks` first.

    Args:
        atk: an advkit attack or a torchattacks attack.
        data: a Dataset, a DataLoader or an ``(x, y)`` pair.
        batch_size: samples per attack call.
        device: where each batch runs (None: the attack's model's device).
        progress: show a progress bar.

    Returns:
        ``TensorDataset(x_adv, y)``, on the CPU.
    """
    if is_torchattacks(atk):
        atk = from_torchattacks(atk)
    if not isinstance(atk, Attack):
        raise TypeError(f"atk must be an advkit Attack or a torchattacks attack, got {type(atk).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x, y = as_tensors(data)
    device = model_device(atk.model) if device is None else torch.device(device)
    starts = range(0, len(x), batch_size)
    adv = [atk.run(x[s:s + batch_size].to(device), y[s:s + batch_size].to(device),
                   seed=batch_seed(atk.seed, i), check_success=False).x_adv.cpu()
           for i, s in enumerate(tqdm(starts, desc=f"generate {type(atk).__name__}", disable=not progress,
                                      leave=False))]
    return TensorDataset(torch.cat(adv) if adv else x[:0].clone(), y.clone())

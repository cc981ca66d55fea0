"""Augmented training: plain training (:func:`advkit.train.fit`) on batches where a share of the images
is corrupted, each with a corruption and a severity drawn at random (:mod:`.corruptions`)."""
from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..core import Hook, check_number
from ..data import as_tensors
from ..data.corruption_accuracy import corruption_accuracy
from ..data.corruptions import CORRUPTIONS, SEVERITIES
from ..train import accuracy, fit
from ..validation import check_choice

log = logging.getLogger(__name__)

__all__ = ["augmented_training", "corruption_mix"]

#: Without eval data, the history's clean accuracy is measured on this many training images (the first ones).
TRAIN_ACCURACY_SAMPLES = 1000


def corruption_mix(names: Sequence[str], share: float, severities: Sequence[int]
                   ) -> Callable[[Tensor, torch.Generator], Tensor]:
    """An ``augment(x, generator)`` for :func:`advkit.train.fit`: each image of the batch is corrupted
    with probability ``share``, with one of ``names`` and one of ``severities`` drawn uniformly and
    independently per image; the others stay as they are. Every draw comes from ``generator``."""
    names, severities = list(names), list(severities)

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        n = len(x)
        chosen = torch.rand(n, generator=generator) < share
        which = torch.randint(len(names), (n,), generator=generator)
        level = torch.randint(len(severities), (n,), generator=generator)
        out = x.clone()
        for k, name in enumerate(names):
            for s, severity in enumerate(severities):
                rows = (chosen & (which == k) & (level == s)).nonzero().squeeze(1).to(x.device)
                if len(rows):
                    out[rows] = CORRUPTIONS[name](x[rows], severity, generator)
        return out

    return augment


class _EpochEnd(Hook):
    """Collects the steps' (detached) losses and, after the last step of every epoch, calls
    ``on_epoch(epoch, losses)`` with that epoch's."""

    def __init__(self, steps_per_epoch: int, on_epoch: Callable[[int, list[Tensor]], None]):
        self.steps_per_epoch, self.on_epoch, self.losses = steps_per_epoch, on_epoch, []

    def outer_step(self, r: int, loss: Tensor) -> None:
        self.losses.append(loss)

    def round_end(self, r: int) -> None:
        if (r + 1) % self.steps_per_epoch == 0:
            self.on_epoch((r + 1) // self.steps_per_epoch, self.losses)
            self.losses = []


def augmented_training(
    model: nn.Module,
    data: Any,
    corruptions: Sequence[str] | None = None,
    epochs: int = 12,
    seed: int = 0,
    progress: bool = True,
    *,
    share: float = 0.5,
    severities: Sequence[int] = SEVERITIES,
    eval_data: Any = None,
    lr: float = 3e-3,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    shift: int = 2,
    weight_decay: float = 5e-4,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train ``model`` on ``data`` as :func:`advkit.train.fit` does (same options, same seeded
    stream), with a ``share`` of every batch's images corrupted: each with one of ``corruptions``
    (names of :data:`~advkit.defenses.CORRUPTIONS`; None: all) at one of ``severities``, drawn at
    random per image. Returns the model (trained in place, in eval mode) and the history, one dict
    per epoch: ``epoch`` (1, 2, ...), ``loss`` (mean training loss), ``clean_accuracy`` (on
    ``eval_data`` when given, else on the first :data:`TRAIN_ACCURACY_SAMPLES` images of ``data``)
    and, with ``eval_data``, ``corruption_accuracy`` (mean over ``corruptions`` and severities 1..5,
    measured by :func:`~advkit.data.corruption_accuracy.corruption_accuracy` with ``seed``). Same ``seed``,
    same model on the CPU (CUDA's convolution kernels need not be deterministic). Bad options raise a
    ``ValueError``/``TypeError`` naming them before any training.
    """
    names = _names(corruptions)
    share = check_number(share, "share", low=0, low_open=False, high=1)
    levels = _severities(severities)
    batch_size = check_number(batch_size, "batch_size", low=1, low_open=False, integer=True)
    x, y = as_tensors(data)
    held_out = as_tensors(eval_data) if eval_data is not None else None
    steps_per_epoch = max(1, len(x) // batch_size)
    history: list[dict[str, float]] = []

    def on_epoch(epoch: int, losses: list[Tensor]) -> None:
        row = {"epoch": epoch, "loss": float(torch.stack(losses).mean())}
        where = next(model.parameters()).device
        judged = (x[:TRAIN_ACCURACY_SAMPLES], y[:TRAIN_ACCURACY_SAMPLES]) if held_out is None else held_out
        row["clean_accuracy"] = accuracy(model, judged, batch_size=1000, device=where)
        if held_out is not None:
            correct = corruption_accuracy(model, *held_out, names, batch_size=1000, device=where, seed=seed)
            row["corruption_accuracy"] = float(torch.cat(list(correct.values()), 1).float().mean())
        history.append(row)
        log.info("augmented training, epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in row.items()))

    fit(model, (x, y), epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, progress=progress,
        shift=shift, weight_decay=weight_decay, augment=corruption_mix(names, share, levels),
        hooks=[_EpochEnd(steps_per_epoch, on_epoch)])
    return model, history


def _names(corruptions: Sequence[str] | None) -> list[str]:
    if corruptions is None:
        return list(CORRUPTIONS)
    if isinstance(corruptions, str):
        corruptions = [corruptions]
    names = list(dict.fromkeys(corruptions))
    if not names:
        raise ValueError(f"corruptions must name at least one of {', '.join(CORRUPTIONS)} (None: all of them)")
    for name in names:
        check_choice(name, tuple(CORRUPTIONS), "corruptions")
    return names


def _severities(severities: Sequence[int]) -> list[int]:
    levels = list(dict.fromkeys(severities))
    bad = [s for s in levels if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s not in SEVERITIES]
    if not levels or bad:
        raise ValueError(f"severities must be a non-empty list of {', '.join(map(str, SEVERITIES))}; "
                         f"got {severities!r}")
    return [int(s) for s in levels]

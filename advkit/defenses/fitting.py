"""Defenses that are plain training through an augmentation (:func:`advkit.train.fit` and its ``augment``
hook), recorded epoch by epoch in a :class:`History`, optionally ending with an average of the weights:
augmented training and Gaussian noise training."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..core import Hook
from ..data import Samples
from ..devices import default_device
from ..train import accuracy, fit
from .ema import Averaging, WeightAverage
from .history import EpochRecord, History

log = logging.getLogger(__name__)

#: Without eval data, the history's clean accuracy is measured on this many training images (the first ones).
TRAIN_ACCURACY_SAMPLES = 1000


class EpochEnd(Hook):
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


def fit_recorded(model: nn.Module, data: Any, eval_data: Any, settings: Any, history: History,
                 augment: Callable[..., Tensor],
                 measure: Callable[[EpochRecord, nn.Module, Samples | None], None] | None = None
                 ) -> tuple[nn.Module, History]:
    """Train ``model`` with :func:`advkit.train.fit` through ``augment`` at ``settings``' epochs, lr,
    batch_size, seed, device, progress, shift and weight_decay; after every epoch append to ``history`` a
    record of the epoch's mean loss, the clean accuracy (on ``eval_data``, else on the first
    :data:`TRAIN_ACCURACY_SAMPLES` training samples), the seconds and what ``measure(record, evaluated,
    eval_samples)`` adds (``eval_samples``: ``eval_data`` as :class:`Samples`, or None). With ``settings.ema``
    > 0 an exponential moving average of the weights (:class:`~advkit.defenses.ema.WeightAverage`) is what
    each epoch evaluates and what ``model`` ends with. Returns the model and ``history``."""
    average = WeightAverage(model.to(default_device(settings.device)), settings.ema) if settings.ema else None
    evaluated = model if average is None else average.model
    samples = Samples(data)
    held_out = Samples(eval_data) if eval_data is not None else None
    steps_per_epoch = max(1, len(samples) // settings.batch_size)
    started = time.perf_counter()

    def on_epoch(epoch: int, losses: list[Tensor]) -> None:
        nonlocal started
        judged = Samples(samples, TRAIN_ACCURACY_SAMPLES) if held_out is None else held_out
        where = next(model.parameters()).device
        record = EpochRecord(epoch=epoch, train_loss=float(torch.stack(losses).mean()),
                             clean_accuracy=accuracy(evaluated, judged, batch_size=1000, device=where), seconds=0.0)
        if measure is not None:
            measure(record, evaluated, held_out)
        now = time.perf_counter()
        record.seconds, started = now - started, now
        history.records.append(record)
        log.info("%s training, epoch %d: %s", history.method, epoch,
                 ", ".join(f"{k} {v:.4f}" for k, v in history.table()[-1].items()))

    fit(model, data, epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size, seed=settings.seed,
        device=settings.device, progress=settings.progress, shift=settings.shift, weight_decay=settings.weight_decay,
        augment=augment, hooks=[*([] if average is None else [Averaging(model, average)]),
                                EpochEnd(steps_per_epoch, on_epoch)])
    if average is not None:
        model.load_state_dict(average.model.state_dict())
    return model, history


__all__ = ["TRAIN_ACCURACY_SAMPLES", "EpochEnd", "fit_recorded"]

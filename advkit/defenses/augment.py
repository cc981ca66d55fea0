"""Augmented training: plain training (:func:`advkit.train.fit`) on batches where a share of the images
is corrupted, each with a corruption and a severity drawn at random (:mod:`advkit.data.corruptions`), and
the others go through AugMix's mixing chains (:func:`advkit.data.operations.augmix`)."""
from __future__ import annotations

import functools
import logging
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core import check_number
from ..data import Samples
from ..data import operations as ops
from ..data.corruption_accuracy import corruption_accuracy
from ..data.corruptions import CORRUPTIONS, SEVERITIES
from ..validation import UNRECORDED, check_choice, options_from, recorded
from .ema import check_ema
from .fitting import fit_recorded
from .history import EpochRecord, History

log = logging.getLogger(__name__)

__all__ = ["AugmentOptions", "augmented_training", "corruption_mix"]

def corruption_mix(names: Sequence[str], share: float, severities: Sequence[int],
                   others: Callable[[Tensor, torch.Generator], Tensor] | None = None
                   ) -> Callable[[Tensor, torch.Generator], Tensor]:
    """An ``augment(x, generator)`` for :func:`advkit.train.fit`: each image of the batch is corrupted
    with probability ``share``, with one of ``names`` and one of ``severities`` drawn uniformly and
    independently per image; the others stay as they are, or become ``others(them, generator)`` (e.g.
    :func:`~advkit.data.operations.augmix`) when given. Every draw comes from ``generator``."""
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
        if others is not None:
            rest = (~chosen).nonzero().squeeze(1).to(x.device)
            if len(rest):
                out[rest] = others(x[rest], generator)
        return out

    return augment


@dataclass(frozen=True)
class AugmentOptions:
    """The settings of :func:`augmented_training` (see there for their meaning), validated when built.

    Kept normalised: ``corruptions`` as a tuple of names of :data:`~advkit.defenses.CORRUPTIONS` and
    ``operations`` as one of :data:`~advkit.data.operations.OPERATIONS` (None: all of them; repeats
    dropped), ``severities`` as a tuple. A bad setting raises
    ``ValueError``/``TypeError`` naming it; ``dataclasses.replace`` checks again. :meth:`config` is
    what the :class:`History` records.
    """

    corruptions: Sequence[str] | None = None
    epochs: int = 12
    seed: int = 0
    share: float = 0.5
    severities: Sequence[int] = SEVERITIES
    lr: float = 3e-3
    batch_size: int = 128
    shift: int = 2
    weight_decay: float = 5e-4
    augmix: bool = True
    operations: Sequence[str] | None = None
    augmix_severity: float = 0.3
    augmix_width: int = 3
    rotate_share: float = 0.5
    ema: float = 0.0
    device: str | torch.device | None = field(default=None, metadata=UNRECORDED)
    progress: bool = field(default=True, metadata=UNRECORDED)

    def __post_init__(self) -> None:
        names = _names(self.corruptions)
        share = check_number(self.share, "share", low=0, low_open=False, high=1)
        levels = _severities(self.severities)
        check_number(self.batch_size, "batch_size", low=1, low_open=False, integer=True)
        if not isinstance(self.augmix, bool):
            raise TypeError(f"augmix must be True or False, got {type(self.augmix).__name__} {self.augmix!r}")
        operations = _operations(self.operations)
        severity = check_number(self.augmix_severity, "augmix_severity", low=0, high=1)
        check_number(self.augmix_width, "augmix_width", low=1, low_open=False, integer=True)
        rotate_share = check_number(self.rotate_share, "rotate_share", low=0, low_open=False, high=1)
        for name, value in (("corruptions", tuple(names)), ("share", share), ("severities", tuple(levels)),
                            ("operations", tuple(operations)), ("augmix_severity", severity),
                            ("rotate_share", rotate_share), ("ema", check_ema(self.ema))):
            object.__setattr__(self, name, value)

    def config(self) -> dict[str, Any]:
        """The recorded settings as plain values (lists for the tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in recorded(self).items()}


def augmented_training(
    model: nn.Module,
    data: Any,
    corruptions: Sequence[str] | None = AugmentOptions.corruptions,
    epochs: int = AugmentOptions.epochs,
    seed: int = AugmentOptions.seed,
    progress: bool = AugmentOptions.progress,
    *,
    share: float = AugmentOptions.share,
    severities: Sequence[int] = AugmentOptions.severities,
    eval_data: Any = None,
    lr: float = AugmentOptions.lr,
    batch_size: int = AugmentOptions.batch_size,
    device: str | torch.device | None = AugmentOptions.device,
    shift: int = AugmentOptions.shift,
    weight_decay: float = AugmentOptions.weight_decay,
    augmix: bool = AugmentOptions.augmix,
    operations: Sequence[str] | None = AugmentOptions.operations,
    augmix_severity: float = AugmentOptions.augmix_severity,
    augmix_width: int = AugmentOptions.augmix_width,
    rotate_share: float = AugmentOptions.rotate_share,
    ema: float = AugmentOptions.ema,
    options: AugmentOptions | None = None,
) -> tuple[nn.Module, History]:
    """Train ``model`` on ``data`` as :func:`advkit.train.fit` does (same options, same seeded stream), on batches
    augmented per image: first a ``rotate_share`` of the images is rotated (up to 30 degrees either way); then a
    ``share`` is corrupted, each with one of ``corruptions`` (names of :data:`~advkit.defenses.CORRUPTIONS`; None:
    all) at one of ``severities``, drawn at random per image; the others, with ``augmix``, go through AugMix's
    mixing chains of ``operations`` (:func:`~advkit.data.operations.augmix`, Hendrycks et al. 2020, without its
    consistency loss). The defaults are those measured in ``benchmarks/README.md`` (augmented training). Returns the
    model (trained in place, in eval mode) and its :class:`History` (``method`` ``"augmented"``, ``config`` the
    run's settings), one record per epoch: ``epoch`` (1, 2, ...), ``train_loss`` (mean training loss),
    ``clean_accuracy`` (on ``eval_data`` when given, else on the first
    :data:`~advkit.defenses.fitting.TRAIN_ACCURACY_SAMPLES` images of ``data``), ``seconds`` and, with
    ``eval_data``, ``corruption_accuracy`` (mean over ``corruptions`` and severities 1..5, measured by
    :func:`~advkit.data.corruption_accuracy.corruption_accuracy` with ``seed``); with ``ema`` these measure the
    average of the weights, which the model ends with. Same ``seed``, same model on the
    CPU (CUDA's convolution kernels need not be deterministic). Bad options raise a ``ValueError``/``TypeError``
    naming them before any training.

    Args:
        model: the network to train, returning logits.
        data: the training data: a Dataset, a DataLoader or an ``(x, y)`` pair.
        corruptions: names of the corruptions to train with (None: all of them).
        epochs: passes over the data.
        seed: seeds fit's stream (batch order, shifts) and the corruption draws.
        progress: show a progress bar.
        share: the probability that an image of a batch is corrupted, in [0, 1].
        severities: the severities drawn from (of 1..5).
        eval_data: the data of the per-epoch accuracies (None: the first training images, no
            corruption accuracy).
        lr: the peak learning rate of fit's one-cycle schedule.
        batch_size: samples per optimizer step.
        device: where to train (None: CUDA when available).
        shift: random translation of training images by up to that many pixels.
        weight_decay: AdamW's weight decay.
        augmix: send the images left uncorrupted through AugMix's mixing chains
            (:func:`~advkit.data.operations.augmix`); False leaves them as they are.
        operations: names of :data:`~advkit.data.operations.OPERATIONS` the chains draw from (None: all).
        augmix_severity: the chains' largest operation strength, in (0, 1] (0.3: AugMix's default
            severity, 3 of 10).
        augmix_width: chains mixed per image.
        rotate_share: the probability that an image is first rotated by an angle drawn uniformly from
            [-30, 30] degrees (before it is corrupted or mixed), in [0, 1].
        ema: the decay of an exponential moving average of the weights, updated after every step, that
            each epoch evaluates and the model ends with (0: none; as ``adversarial_training``'s ``ema``).
        options: all of the settings above but ``model``, ``data`` and ``eval_data`` as one
            :class:`AugmentOptions`, instead of keywords (a keyword beside it is a TypeError).

    Returns:
        ``(model, history)``: the trained model in eval mode and its :class:`History`.
    """
    settings = options_from(AugmentOptions, options, {
        "corruptions": corruptions, "epochs": epochs, "seed": seed, "share": share, "severities": severities, "lr": lr,
        "batch_size": batch_size, "shift": shift, "weight_decay": weight_decay, "device": device,
        "progress": progress, "augmix": augmix, "operations": operations, "augmix_severity": augmix_severity,
        "augmix_width": augmix_width, "rotate_share": rotate_share, "ema": ema})
    names, seed = list(settings.corruptions), settings.seed

    def measure(record: EpochRecord, evaluated: nn.Module, held_out: Samples | None) -> None:
        if held_out is None:
            return
        where = next(model.parameters()).device
        correct: dict[str, list[Tensor]] = {name: [] for name in names}
        for k, (_, xb, yb) in enumerate(held_out.batches(1000)):  # read a batch at a time
            for name, part in corruption_accuracy(evaluated, xb, yb, names, batch_size=1000, device=where, seed=seed,
                                                  first_batch=k).items():
                correct[name].append(part)
        record.corruption_accuracy = float(torch.cat([torch.cat(parts) for parts in correct.values()], 1)
                                           .float().mean())

    history = History("augmented", None, "training data" if eval_data is None else "eval_data",
                      config=settings.config())
    return fit_recorded(model, data, eval_data, settings, history, _augment(settings), measure)


def _augment(settings: AugmentOptions) -> Callable[[Tensor, torch.Generator], Tensor]:
    """The ``augment(x, generator)`` of a run: a ``rotate_share`` of the images rotated (AugMix's rotate at
    a strength drawn uniformly from [0, 1]: up to 30 degrees either way), then :func:`corruption_mix`, with
    AugMix on the images it leaves uncorrupted when ``augmix``."""
    others = None
    if settings.augmix:
        others = functools.partial(ops.augmix, names=list(settings.operations), severity=settings.augmix_severity,
                                   width=settings.augmix_width)
    mix = corruption_mix(list(settings.corruptions), settings.share, list(settings.severities), others=others)
    if not settings.rotate_share:
        return mix

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        rows = (torch.rand(len(x), generator=generator) < settings.rotate_share).nonzero().squeeze(1)
        strength = torch.rand(len(rows), generator=generator, dtype=x.dtype)
        x = x.clone()
        if len(rows):
            rows = rows.to(x.device)
            x[rows] = ops.OPERATIONS["rotate"](x[rows], strength, generator)
        return mix(x, generator)

    return augment


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


def _operations(operations: Sequence[str] | None) -> list[str]:
    if operations is None:
        return list(ops.OPERATIONS)
    names = list(dict.fromkeys([operations] if isinstance(operations, str) else operations))
    if not names:
        raise ValueError(f"operations must name at least one of {', '.join(ops.OPERATIONS)} (None: all of them)")
    for name in names:
        check_choice(name, tuple(ops.OPERATIONS), "operations")
    return names


def _severities(severities: Sequence[int]) -> list[int]:
    levels = list(dict.fromkeys(severities))
    bad = [s for s in levels if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s not in SEVERITIES]
    if not levels or bad:
        raise ValueError(f"severities must be a non-empty list of {', '.join(map(str, SEVERITIES))}; "
                         f"got {severities!r}")
    return [int(s) for s in levels]

"""Plain supervised training, as the outer player of the core game with no inner player."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import lr_scheduler
from torch.utils.data import TensorDataset

from .batches import BatchOrder, batch_stream
from .core import Hook, OptimizerStep, Player, frozen, play, trainable_params
from .data import Samples, as_tensors
from .devices import default_device
from .progress import ProgressHook
from .rng import RunRNG
from .validation import check_images, check_label_range, check_labels, fits_model

log = logging.getLogger(__name__)


def random_shift(x: Tensor, pixels: int, generator: torch.Generator, rows: tuple[int, int] | None = None) -> Tensor:
    """Translate each image by up to ``pixels`` in each direction (zero fill): cheap augmentation.
    ``rows=(start, total)``: ``x`` is rows ``start...`` of a batch of ``total``, shifted as they would be
    in the whole batch (the shifts are drawn for all ``total`` rows)."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    start, total = rows or (0, n)
    padded = F.pad(x, (pixels,) * 4)
    dy, dx = (torch.randint(0, 2 * pixels + 1, (total,), generator=generator)[start:start + n] for _ in range(2))
    rows = (dy.view(n, 1) + torch.arange(h)).to(x.device)
    cols = (dx.view(n, 1) + torch.arange(w)).to(x.device)
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[idx, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)


#: The one-cycle schedule's shape: the share of the steps spent warming up from peak / 25 to the peak.
WARMUP_SHARE = 0.25


def one_cycle(step: int, total: int, peak: float, warm: float = WARMUP_SHARE) -> float:
    """The learning rate of ``step`` of ``total``: a half cosine up from ``peak``/25 to ``peak`` over the
    first ``warm`` share of the steps, then a half cosine down towards 0 (Smith's one-cycle shape). A
    function of the step alone, so a resumed run continues the schedule (adversarial training's)."""
    up = max(1.0, warm * total)
    if step < up:
        return peak * (1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / up)) / 2)
    return peak * (1 + math.cos(math.pi * (step - up) / max(1.0, total - up))) / 2


def one_cycle_scheduler(optimizer: torch.optim.Optimizer, peak: float, total: int) -> lr_scheduler.OneCycleLR:
    """torch's OneCycleLR of the same shape as :func:`one_cycle` (fit's schedule; it also cycles AdamW's
    beta1 between 0.95 and 0.85 and ends at peak / 25e4, so its rates differ from ``one_cycle``'s in detail).
    torch ends the warm-up at step ``share * total - 1`` and divides by it, which is 0 for 4 steps: those
    warm up to step 1 instead (peak / 25, the peak, then down)."""
    share = WARMUP_SHARE if WARMUP_SHARE * total != 1 else 2 / total
    return lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=total, pct_start=share)


class _LRSchedule(Hook):
    """Steps a learning-rate scheduler after every outer move."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.scheduler = scheduler

    def outer_step(self, r: int, loss: Tensor) -> None:
        self.scheduler.step()


def fit(
    model: nn.Module,
    data,
    epochs: int = 12,
    lr: float = 3e-3,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    shift: int = 2,
    weight_decay: float = 5e-4,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    hooks: Sequence[Hook] = (),
) -> list[float]:
    """Train ``model`` on ``data`` with AdamW and a one-cycle learning rate; returns per-step losses.

    Runs through :func:`advkit.core.play` with the network as the only (outer) player. ``shift``
    randomly translates each training image by up to that many pixels (0 turns it off). Labels must
    be integer class indices below the model's number of outputs (a ``TypeError``/``ValueError``
    before any training otherwise). ``augment(x, generator)``, when given, maps each (shifted) batch
    of images to the batch trained on, drawing any randomness from ``generator`` (the training's own,
    seeded with ``seed``); without it the numbers are those of no augmentation. An ``augment`` whose
    ``takes_labels`` attribute is true is called ``augment(x, generator, y)`` with the batch's labels too
    (to attack them: :func:`advkit.defenses.gaussian_training`'s SmoothAdv). ``hooks`` see the
    game's events after the learning-rate schedule and the progress bar (round r is step r).
    torch's global RNG (dropout) draws from a stream seeded with ``seed``; the caller's global RNG is
    left exactly as it was.

    Args:
        model: the network to train (in place), returning logits.
        data: a Dataset, a DataLoader or an ``(x, y)`` pair of images and class indices; a Dataset or
            DataLoader is read a batch at a time (ahead by a DataLoader's workers), never whole.
        epochs: passes over the data.
        lr: the peak learning rate of the one-cycle schedule.
        batch_size: samples per optimizer step.
        seed: seeds the batch order, the shifts, ``augment``'s generator and torch's RNG for the run.
        device: where to train (None: CUDA when available).
        progress: show a progress bar.
        shift: random translation of each image by up to that many pixels (0: off).
        weight_decay: AdamW's weight decay.
        augment: None, or ``augment(x, generator)`` returning the batch trained on (``augment(x, generator,
            y)`` when it has ``takes_labels = True``).
        hooks: :class:`advkit.core.Hook` s that see the game's events.

    Returns:
        The loss of every step, in order.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive; got {epochs}, {batch_size}, {lr}")
    device = default_device(device)
    with RunRNG(seed).active():  # torch's global RNG (dropout) is seeded for the run, the caller's left as it was
        gen = torch.Generator().manual_seed(seed)
        model.to(device)
        samples = checked_samples(model, data, device)
        model.train()
        steps_per_epoch = max(1, len(samples) // batch_size)
        rounds = epochs * steps_per_epoch
        opt = torch.optim.AdamW(trainable_params(model), lr=lr, weight_decay=weight_decay)
        sched = one_cycle_scheduler(opt, lr, rounds)
        batches = batch_stream(samples, batch_size, BatchOrder(generator=gen), device)  # gen also shifts the images
        losses: list[Tensor] = []

        def loss() -> Tensor:
            bx, by, _ = next(batches)
            if shift and bx.ndim == 4:
                bx = random_shift(bx, shift, gen)
            if augment is not None:
                bx = augment(bx, gen, by) if getattr(augment, "takes_labels", False) else augment(bx, gen)
            out = F.cross_entropy(model(bx), by)
            losses.append(out.detach())
            return out

        outer = Player(trainable_params(model), OptimizerStep(opt), maximize=False)
        hooks = [_LRSchedule(sched), ProgressHook(rounds, "fit", progress), *hooks]
        play(outer=outer, outer_loss=loss, rounds=rounds, hooks=hooks)
        model.eval()
        history = torch.stack(losses).tolist() if losses else []
        log.info("fit: %d steps, final loss %.4f", rounds, history[-1] if history else math.nan)
        return history


def checked_samples(model: nn.Module, data, device: torch.device, images: bool = False,
                    name: str = "data") -> Samples:
    """``data`` as :class:`advkit.data.Samples` whose labels are int64 class indices below the number of
    logits ``model`` returns (and, with ``images``, whose images are finite and in [0, 1]). Tensors in
    memory are checked whole now; data read from a Dataset or DataLoader as each batch is read, and its
    first sample now (the model's number of logits, one eval-mode forward). Errors (TypeError, ValueError)
    speak of "data", prefixed with ``name`` when it is another."""
    with _named(name):
        if isinstance(data, (tuple, list, TensorDataset)):
            x, y = as_tensors(data)
            if images and len(x):
                x = check_images(x, "data images")
            return Samples((x, check_model_labels(model, x, y, device)))
        samples = Samples(data)
        with frozen(model), torch.no_grad():
            first, _ = samples.read([0])
            with fits_model(first, "data images"):
                classes = model(first.to(device)).shape[-1]

    def check(x: Tensor, y: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        with _named(name):
            if images:
                x = check_images(x, "data images")
            y = check_labels(y, len(x), y.device, "data labels")
            check_label_range(y, classes, f"data labels (the model returns {classes} logits)")
        return x, y

    return samples.map(check)


@contextmanager
def _named(name: str) -> Iterator[None]:
    """A TypeError or ValueError raised inside, prefixed with ``name`` unless that is "data"."""
    try:
        yield
    except (TypeError, ValueError) as err:
        if name == "data":
            raise
        raise type(err)(f"{name}: {err}") from None


@torch.no_grad()
def check_model_labels(model: nn.Module, x: Tensor, y: Tensor, device: torch.device) -> Tensor:
    """``y`` as int64, once it holds one integer label per sample of ``x``, each below the number of
    logits ``model`` returns (one eval-mode forward of one sample; the model's mode is restored)."""
    if len(x) == 0:
        raise ValueError("data is empty")
    y = check_labels(y, len(x), y.device, "data labels")
    with frozen(model), fits_model(x, "data images"):
        classes = model(x[:1].to(device)).shape[-1]
    check_label_range(y, classes, f"data labels (the model returns {classes} logits)")
    return y


@torch.no_grad()
def accuracy(model: nn.Module, data, batch_size: int = 1000, device: str | torch.device | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode; the model's mode is restored).

    Args:
        model: the classifier, returning logits.
        data: a Dataset, a DataLoader or an ``(x, y)`` pair (read a batch at a time).
        batch_size: samples per forward.
        device: where to compute (None: the device of the model's first parameter).

    Returns:
        The share of samples whose top logit is their label, in [0, 1].
    """
    samples = Samples(data)
    device = next(model.parameters()).device if device is None else torch.device(device)
    with frozen(model):
        correct = sum(int((model(x.to(device)).argmax(1) == y.to(device)).sum())
                      for _, x, y in samples.batches(batch_size))
    return correct / len(samples)

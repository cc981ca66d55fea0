"""Training for randomized smoothing: Gaussian noise augmentation at the certification sigma (Cohen et al.
2019) and, as an option, SmoothAdv (Salman et al. 2019): adversarial training of the smoothed classifier.
Both are plain training (:func:`advkit.train.fit`) through its ``augment`` hook."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import check_number, frozen
from ..data import Samples
from ..validation import UNRECORDED, options_from, recorded
from .ema import check_ema
from .fitting import fit_recorded
from .history import EpochRecord, History

log = logging.getLogger(__name__)

__all__ = ["GaussianOptions", "gaussian_training", "smoothadv_attack", "smoothed_loss"]


def smoothed_loss(model: nn.Module, x: Tensor, y: Tensor, noise: Tensor) -> Tensor:
    """Per sample, ``-log`` of the mean over the draws of ``noise`` (shape ``(m, *x.shape)``) of
    ``softmax(model(x + noise[k]))_y``: the cross-entropy of the smoothed soft classifier estimated with
    those m draws (Salman et al. 2019), computed stably as a log-sum-exp of log-softmaxes.

    Args:
        model: the base classifier (logits).
        x: the images, ``(N, ...)``.
        y: their labels, ``(N,)``.
        noise: the draws, ``(m, N, ...)`` (already scaled by sigma).

    Returns:
        The ``(N,)`` losses.
    """
    m = len(noise)
    logits = model((x.unsqueeze(0) + noise).flatten(0, 1))
    picked = F.log_softmax(logits, 1).view(m, len(x), -1).gather(2, y.view(1, -1, 1).expand(m, -1, 1)).squeeze(2)
    return math.log(m) - torch.logsumexp(picked, 0)


def smoothadv_attack(model: nn.Module, x: Tensor, y: Tensor, noise: Tensor, eps: float, steps: int) -> Tensor:
    """SmoothAdv's PGD (Salman et al. 2019): ``steps`` L2 steps of size ``2 * eps / steps`` from ``x``, each
    along the normalised gradient of :func:`smoothed_loss` with the same ``noise`` draws, then clipped to
    [0, 1] and projected onto the L2 ball of radius ``eps`` around ``x``. The model runs in eval mode and is
    left exactly as it was (mode, ``requires_grad``, ``.grad``); no randomness beyond ``noise``.

    Args:
        model: the base classifier (logits).
        x: clean images in [0, 1], ``(N, ...)``.
        y: their labels, ``(N,)``.
        noise: the draws, ``(m, N, ...)`` (already scaled by sigma).
        eps: the L2 budget (>= 0; 0 returns ``x``).
        steps: PGD steps (>= 1).

    Returns:
        The adversarial images, detached, within ``eps`` of ``x`` in L2 and in [0, 1].
    """
    eps = check_number(eps, "eps", low=0, low_open=False)
    steps = check_number(steps, "steps", low=1, low_open=False, integer=True)
    if noise.ndim != x.ndim + 1 or noise.shape[1:] != x.shape:
        raise ValueError(f"noise must have shape (m, *x.shape) = (m, {', '.join(map(str, x.shape))}), "
                         f"got {tuple(noise.shape)}")
    x = x.detach()
    if eps == 0:
        return x
    delta = torch.zeros_like(x)
    with frozen(model), torch.enable_grad():
        for _ in range(steps):
            delta.requires_grad_(True)
            grad, = torch.autograd.grad(smoothed_loss(model, x + delta, y, noise).sum(), delta)
            norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
            delta = (x + delta.detach() + (2 * eps / steps) * grad / norms).clamp(0, 1) - x
            delta = delta.renorm(2, 0, eps)
    return (x + delta).detach()


@dataclass(frozen=True)
class GaussianOptions:
    """The settings of :func:`gaussian_training` (see there for their meaning), validated when built. A bad
    setting raises ``ValueError``/``TypeError`` naming it; ``dataclasses.replace`` checks again.
    :meth:`config` is what the :class:`History` records."""

    sigma: float = 0.25
    epochs: int = 12
    seed: int = 0
    lr: float = 3e-3
    batch_size: int = 128
    shift: int = 2
    weight_decay: float = 5e-4
    smoothadv_eps: float = 0.0
    smoothadv_steps: int = 2
    smoothadv_samples: int = 2
    smoothadv_warmup: float = 0.25
    ema: float = 0.0
    device: str | torch.device | None = field(default=None, metadata=UNRECORDED)
    progress: bool = field(default=True, metadata=UNRECORDED)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_number(self.sigma, "sigma"))
        check_number(self.epochs, "epochs", low=1, low_open=False, integer=True)
        check_number(self.batch_size, "batch_size", low=1, low_open=False, integer=True)
        object.__setattr__(self, "smoothadv_eps", check_number(self.smoothadv_eps, "smoothadv_eps", low_open=False))
        check_number(self.smoothadv_steps, "smoothadv_steps", low=1, low_open=False, integer=True)
        check_number(self.smoothadv_samples, "smoothadv_samples", low=1, low_open=False, integer=True)
        object.__setattr__(self, "smoothadv_warmup", check_number(self.smoothadv_warmup, "smoothadv_warmup",
                                                                  low_open=False, high=1))
        object.__setattr__(self, "ema", check_ema(self.ema))

    def config(self) -> dict[str, Any]:
        """The recorded settings as plain values."""
        return recorded(self)


def gaussian_training(
    model: nn.Module,
    data: Any,
    sigma: float = GaussianOptions.sigma,
    epochs: int = GaussianOptions.epochs,
    seed: int = GaussianOptions.seed,
    progress: bool = GaussianOptions.progress,
    *,
    eval_data: Any = None,
    lr: float = GaussianOptions.lr,
    batch_size: int = GaussianOptions.batch_size,
    device: str | torch.device | None = GaussianOptions.device,
    shift: int = GaussianOptions.shift,
    weight_decay: float = GaussianOptions.weight_decay,
    smoothadv_eps: float = GaussianOptions.smoothadv_eps,
    smoothadv_steps: int = GaussianOptions.smoothadv_steps,
    smoothadv_samples: int = GaussianOptions.smoothadv_samples,
    smoothadv_warmup: float = GaussianOptions.smoothadv_warmup,
    ema: float = GaussianOptions.ema,
    options: GaussianOptions | None = None,
) -> tuple[nn.Module, History]:
    """Train ``model`` for randomized smoothing at noise level ``sigma``: :func:`advkit.train.fit` (same
    options, same seeded stream) on every image plus ``sigma * N(0, I)``, the noise not clipped to [0, 1]
    (Gaussian augmentation, Cohen et al. 2019). With ``smoothadv_eps > 0``, SmoothAdv (Salman et al. 2019):
    each batch is first attacked by :func:`smoothadv_attack` (``smoothadv_steps`` L2 steps on the smoothed
    classifier estimated with ``smoothadv_samples`` noise draws, eps ramped linearly from 0 over the first
    ``smoothadv_warmup`` share of the steps), and the model trains on the attacked images plus the first of
    those draws (the paper trains on all m noisy copies; one of them is the same loss in expectation).
    All noise comes from fit's generator: same ``seed``, same model on the CPU.

    The defaults are fit's (the plain model of ``benchmarks/smoothing.py`` is trained with them, so the two
    differ only in the noise): 12 epochs of Gaussian augmentation reach the certified accuracies of
    ``benchmarks/README.md`` (randomized smoothing). Returns the model (trained in place, in eval mode) and
    its :class:`History` (``method`` ``"gaussian"`` or ``"smoothadv"``, ``eps`` the SmoothAdv budget or
    None), one record per epoch: ``epoch``, ``train_loss``, ``clean_accuracy`` of the base model on noise-free
    images (``eval_data`` when given, else the first :data:`~advkit.defenses.fitting.TRAIN_ACCURACY_SAMPLES`
    training images; with ``ema``, of the average of the weights, which the model ends with), ``seconds``, and
    with SmoothAdv the ``eps`` reached. Bad options raise a
    ``ValueError``/``TypeError`` naming them before any training.

    Args:
        model: the base classifier to train, returning logits.
        data: the training data: a Dataset, a DataLoader or an ``(x, y)`` pair.
        sigma: the noise's standard deviation (> 0): the sigma the model will be certified at.
        epochs: passes over the data.
        seed: seeds fit's stream (batch order, shifts) and the noise.
        progress: show a progress bar.
        eval_data: the data of the per-epoch clean accuracy (None: the first training images).
        lr: the peak learning rate of fit's one-cycle schedule.
        batch_size: samples per optimizer step.
        device: where to train (None: CUDA when available).
        shift: random translation of training images by up to that many pixels (before the noise).
        weight_decay: AdamW's weight decay.
        smoothadv_eps: SmoothAdv's L2 budget (0: Gaussian augmentation alone; the paper uses 0.25 to 1).
        smoothadv_steps: SmoothAdv's PGD steps (the paper: 1 to 10).
        smoothadv_samples: noise draws m of the smoothed classifier attacked (the paper: 1 to 8).
        smoothadv_warmup: the share of the training steps over which SmoothAdv's eps grows from 0, in [0, 1].
        ema: the decay of an exponential moving average of the weights, updated after every step, that
            each epoch evaluates and the model ends with (0: none; as ``adversarial_training``'s ``ema``).
        options: all of the settings above but ``model``, ``data`` and ``eval_data`` as one
            :class:`GaussianOptions`, instead of keywords (a keyword beside it is a TypeError).

    Returns:
        ``(model, history)``: the trained model in eval mode and its :class:`History`.
    """
    settings = options_from(GaussianOptions, options, {
        "sigma": sigma, "epochs": epochs, "seed": seed, "progress": progress, "lr": lr, "batch_size": batch_size,
        "device": device, "shift": shift, "weight_decay": weight_decay, "smoothadv_eps": smoothadv_eps,
        "smoothadv_steps": smoothadv_steps, "smoothadv_samples": smoothadv_samples,
        "smoothadv_warmup": smoothadv_warmup, "ema": ema})
    adversarial = settings.smoothadv_eps > 0
    history = History("smoothadv" if adversarial else "gaussian", settings.smoothadv_eps if adversarial else None,
                      "training data" if eval_data is None else "eval_data", config=settings.config())
    steps = max(1, len(Samples(data)) // settings.batch_size) * settings.epochs
    augment = _SmoothingNoise(settings, model, steps)

    def measure(record: EpochRecord, evaluated: nn.Module, held_out: Samples | None) -> None:
        record.eps = augment.eps if adversarial else None

    return fit_recorded(model, data, eval_data, settings, history, augment, measure)


class _SmoothingNoise:
    """fit's augment of a run: ``x + sigma * N(0, I)`` from fit's generator, after SmoothAdv's attack on the
    batch's labels when its eps is > 0 (``eps``: the budget of the latest step, ramped over the warm-up)."""

    takes_labels = True  # fit passes the batch's labels

    def __init__(self, settings: GaussianOptions, model: nn.Module, total_steps: int):
        self.settings, self.model, self.step, self.eps = settings, model, 0, 0.0
        self.warm_steps = round(settings.smoothadv_warmup * total_steps)

    def __call__(self, x: Tensor, generator: torch.Generator, y: Tensor) -> Tensor:
        s = self.settings
        if not s.smoothadv_eps:
            return x + s.sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        self.step += 1
        self.eps = s.smoothadv_eps * min(1.0, self.step / self.warm_steps) if self.warm_steps else s.smoothadv_eps
        noise = s.sigma * torch.randn((s.smoothadv_samples, *x.shape), generator=generator, dtype=x.dtype).to(x.device)
        return smoothadv_attack(self.model, x, y, noise, self.eps, s.smoothadv_steps) + noise[0]

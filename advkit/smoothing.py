"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): the smoothed classifier
``g(x) = argmax_c P(f(x + sigma * eps) = c)``, ``eps ~ N(0, I)``, of any base classifier ``f``, with the
paper's PREDICT (a class or an abstention) and CERTIFY (a class and a certified L2 radius, or an abstention).

The pieces both need live here, below defenses and evaluation (its peers' users): :class:`NoisyClassifier`,
the base classifier under noise as a module (what the EOT attacks on the smoothed classifier differentiate),
and :func:`count_classes`, the top-1 counts over noise draws, batched across images and seeded."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .acceleration import autocast
from .core import check_number, frozen
from .devices import model_device, placed
from .progress import long_work_bar
from .validation import check_images, check_labels

__all__ = ["ABSTAIN", "Certificate", "NoisyClassifier", "certify", "clopper_pearson_lower", "count_classes",
           "predict_smoothed"]

#: The class of an abstention.
ABSTAIN = -1


class NoisyClassifier(nn.Module):
    """The base classifier under Gaussian noise: ``model(x + sigma * N(0, I))``, fresh noise in every
    forward, not clipped to [0, 1] (as Cohen et al.). Its expected softmax is what the EOT attacks on the
    smoothed classifier climb.

    Args:
        model: the base classifier, returning ``(N, C)`` logits.
        sigma: the noise's standard deviation (> 0), in pixel units of [0, 1] images.
    """

    def __init__(self, model: nn.Module, sigma: float):
        super().__init__()
        self.model = model
        self.sigma = float(check_number(sigma, "sigma"))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


@dataclass(frozen=True)
class Certificate:
    """What :func:`certify` found for each of N images.

    Attributes:
        prediction: LongTensor (N,): the smoothed classifier's class, or -1 (:data:`ABSTAIN`).
        radius: FloatTensor (N,): the certified L2 radius ``sigma * Phi^-1(pA_lower)``; 0 where abstained.
        counts: LongTensor (N,): how many of the ``n`` estimation draws the predicted class took (the
            selected class's where abstained).
        sigma, n0, n, alpha: the settings it was certified with.
    """

    prediction: Tensor
    radius: Tensor
    counts: Tensor
    sigma: float
    n0: int
    n: int
    alpha: float

    def accuracy(self, y: Tensor, radius: float = 0.0) -> float:
        """Certified accuracy at ``radius``: the share of images whose prediction is their label ``y`` with a
        certified radius of at least ``radius`` (an abstention is never right).

        Args:
            y: the labels, shape (N,).
            radius: the L2 radius (>= 0).
        """
        r = check_number(radius, "radius", low_open=False)
        y = check_labels(y, len(self.prediction), self.prediction.device)
        return float(((self.prediction == y) & (self.radius >= r)).float().mean())

    def curve(self, y: Tensor, radii) -> list[tuple[float, float]]:
        """``[(r, accuracy(y, r)) for r in radii]``: certified accuracy against the L2 radius.

        Args:
            y: the labels, shape (N,).
            radii: the L2 radii (each >= 0).
        """
        return [(float(r), self.accuracy(y, r)) for r in radii]


def clopper_pearson_lower(k: Tensor, n: int, alpha: float) -> Tensor:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion from ``k`` successes in
    ``n`` trials: ``Beta.ppf(alpha, k, n - k + 1)``, 0 where ``k`` is 0. A float64 tensor shaped like ``k``."""
    from scipy.stats import beta

    k_np = k.detach().cpu().double().numpy()
    bound = torch.from_numpy(beta.ppf(alpha, k_np, n - k_np + 1)).nan_to_num(0.0)
    return bound.where(k.cpu() > 0, torch.zeros((), dtype=torch.float64))


def count_classes(model: nn.Module, x: Tensor, sigma: float, num: int, batch_size: int,
                  generator: torch.Generator, bar=None, amp: bool = False) -> Tensor:
    """How often each class is the base classifier's top-1 under ``num`` noise draws per image: a LongTensor
    (N, C) on x's device. The N * num noisy copies go through the model ``batch_size`` at a time (draws of
    several images share a forward), image-major: draw j of image i is row ``i * num + j`` of the sequence,
    its noise the next rows of ``torch.randn((b, *x.shape[1:]), generator=generator)`` for each forward of
    b rows. Runs without gradients (with ``amp``, the forwards under bf16 autocast on CUDA); the caller holds
    the model frozen."""
    total = len(x) * num
    counts = None
    with torch.no_grad(), autocast(x.device, amp):
        for start in range(0, total, batch_size):
            rows = torch.arange(start, min(start + batch_size, total), device=x.device)
            image = rows // num
            noise = torch.randn((len(rows), *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
            logits = model(x[image] + sigma * noise)
            if counts is None:
                counts = torch.zeros(len(x), logits.shape[1], dtype=torch.long, device=x.device)
            top = logits.argmax(1)
            counts.index_put_((image, top), torch.ones_like(top), accumulate=True)
            if bar is not None:
                bar.update(len(rows))
    return counts


def _settings(model, x, sigma, n, alpha, batch_size, seed, n0=1) -> tuple[Tensor, float, int, int, float, int]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = check_images(x)
    sigma = check_number(sigma, "sigma")
    n0 = check_number(n0, "n0", low=1, low_open=False, integer=True)
    n = check_number(n, "n", low=1, low_open=False, integer=True)
    alpha = check_number(alpha, "alpha", high=1, high_open=True)
    batch_size = check_number(batch_size, "batch_size", low=1, low_open=False, integer=True)
    seed = check_number(seed, "seed", low=None, integer=True)
    return x, sigma, n0, n, alpha, batch_size


def _count_draws(model: nn.Module, x: Tensor, sigma: float, draws: tuple[int, ...], batch_size: int, seed: int,
                 device: str | torch.device | None, progress: bool, title: str,
                 amp: bool) -> tuple[list[Tensor], torch.device]:
    """:func:`count_classes` for each number of ``draws`` in turn, from one generator seeded with ``seed`` and
    under one bar, the model on ``device`` (None: where it is) and frozen for the call; the counts and the device."""
    device = model_device(model) if device is None else torch.device(device)
    with placed(model, device), frozen(model):
        x = x.to(device)
        generator = torch.Generator(device=device).manual_seed(seed)
        with long_work_bar(len(x) * sum(draws), title, progress, unit="draw") as bar:
            return [count_classes(model, x, sigma, num, batch_size, generator, bar, amp) for num in draws], device


def certify(model: nn.Module, x: Tensor, sigma: float = 0.25, n0: int = 100, n: int = 10_000,
            alpha: float = 0.001, batch_size: int = 1000, seed: int = 0, device: str | torch.device | None = None,
            progress: bool = True, amp: bool = False) -> Certificate:
    """Cohen et al.'s CERTIFY for each image of ``x``: the class the base classifier picks most often under
    ``n0`` noise draws, then its count ``k`` among ``n`` fresh draws; with ``pA = Beta.ppf(alpha, k, n - k + 1)``
    (Clopper-Pearson), the smoothed classifier is that class within the L2 radius ``sigma * Phi^-1(pA)`` with
    probability at least 1 - alpha, or abstains when ``pA <= 0.5``. Needs no labels. The model is left as
    it was (counted in eval mode, every flag restored).

    Args:
        model: the base classifier, returning ``(N, C)`` logits of [0, 1] images.
        x: the images, ``(N, C, H, W)`` or ``(N, D)`` in [0, 1].
        sigma: the noise's standard deviation (> 0).
        n0: selection draws per image (>= 1).
        n: estimation draws per image (>= 1).
        alpha: the failure probability, in (0, 1).
        batch_size: noisy copies per forward (>= 1), draws of several images together.
        seed: seeds the noise (a ``torch.Generator`` of this call): the same seed gives the same counts.
        device: where to count (None: where the model is); the model moves there for the call and back.
        progress: show a bar on long work.
        amp: the forwards under bf16 autocast on CUDA (faster; a draw near a tie between two classes may
            count for the other); nothing changes on the CPU.
    """
    x, sigma, n0, n, alpha, batch_size = _settings(model, x, sigma, n, alpha, batch_size, seed, n0)
    (selection, estimation), device = _count_draws(model, x, sigma, (n0, n), batch_size, seed, device, progress,
                                                   "certify", amp)
    selected = selection.argmax(1)
    k = estimation.gather(1, selected[:, None])[:, 0]
    p_lower = clopper_pearson_lower(k, n, alpha)
    certified = p_lower > 0.5
    from scipy.stats import norm

    radius = torch.from_numpy(sigma * norm.ppf(p_lower.clamp(min=0.5).numpy())).float().to(device)
    certified = certified.to(device)
    return Certificate(prediction=selected.where(certified, torch.full_like(selected, ABSTAIN)),
                       radius=radius.where(certified, torch.zeros_like(radius)), counts=k,
                       sigma=sigma, n0=n0, n=n, alpha=alpha)


def predict_smoothed(model: nn.Module, x: Tensor, sigma: float, n: int = 100, alpha: float = 0.001,
                     batch_size: int = 1000, seed: int = 0, device: str | torch.device | None = None,
                     progress: bool = True, amp: bool = False) -> Tensor:
    """Cohen et al.'s PREDICT: the smoothed classifier's class for each image of ``x`` from ``n`` noise
    draws, or -1 (:data:`ABSTAIN`) where the two-sided binomial test of the top two counts
    (``scipy.stats.binomtest(nA, nA + nB, 0.5)``) has a p-value above ``alpha``; a class returned differs
    from the smoothed classifier's with probability at most alpha. A LongTensor (N,) on the model's device.

    Args:
        model: the base classifier, returning ``(N, C)`` logits of [0, 1] images.
        x: the images, ``(N, C, H, W)`` or ``(N, D)`` in [0, 1].
        sigma: the noise's standard deviation (> 0).
        n: noise draws per image (>= 1).
        alpha: the failure probability, in (0, 1).
        batch_size: noisy copies per forward (>= 1), draws of several images together.
        seed: seeds the noise (a ``torch.Generator`` of this call): the same seed gives the same answer.
        device: where to count (None: where the model is); the model moves there for the call and back.
        progress: show a bar on long work.
        amp: the forwards under bf16 autocast on CUDA (faster; a draw near a tie between two classes may
            count for the other); nothing changes on the CPU.
    """
    x, sigma, _, n, alpha, batch_size = _settings(model, x, sigma, n, alpha, batch_size, seed)
    (counts,), device = _count_draws(model, x, sigma, (n,), batch_size, seed, device, progress, "predict (smoothed)",
                                     amp)
    from scipy.stats import binomtest

    top, classes = counts.topk(2, dim=1)
    top = top.cpu().tolist()
    confident = torch.tensor([binomtest(a, a + b, 0.5).pvalue <= alpha if a + b else False for a, b in top],
                             device=device)
    return classes[:, 0].where(confident, torch.full_like(classes[:, 0], ABSTAIN))


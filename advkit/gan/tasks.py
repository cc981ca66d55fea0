"""Toy and paired data sets for GANs: the 2-D ring of Gaussians with its mode statistics, and
pix2pix-style pairs (condition image, target image) made from labelled image sets.

Paired sets are TensorDatasets of ``(condition, target)``, the order ``GANTrainer(conditional="image")``
expects: ``"edges"`` (Sobel edge map -> digit), ``"downsample"`` (7x7 block average shown at full size
-> digit) and ``"colorize"`` (grey -> colour, on 3-channel data such as cifar10).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from ..data import as_tensors

#: GANTrainer options for the ring with the MLPs of ``advkit.gan.models``: the DCGAN optimiser for
#: networks without spectral norm (GANTrainer's defaults are SNGAN's, for image GANs), one D step per
#: G step and no EMA (its average of points on a ring falls between the modes).
RING_RECIPE = {"loss": "non-saturating", "n_critic": 1, "lr_g": 1e-3, "lr_d": 1e-3, "betas": (0.5, 0.999),
               "ema_decay": None, "mode_seeking": 0.0}


def ring_modes(modes: int = 8, radius: float = 2.0) -> Tensor:
    """The (modes, 2) centres of the ring, evenly spaced on a circle.

    Args:
        modes: the number of centres.
        radius: the circle's radius.
    """
    angles = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
    return radius * torch.stack([angles.cos(), angles.sin()], 1)


def ring_of_gaussians(n: int, modes: int = 8, radius: float = 2.0, std: float = 0.05, seed: int = 0) -> TensorDataset:
    """``n`` points from an equal mixture of isotropic Gaussians on a ring, as ``(points, mode index)``.

    Args:
        n: the number of points.
        modes: the number of Gaussians.
        radius: the ring's radius.
        std: each Gaussian's standard deviation.
        seed: seeds the draw.
    """
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(0, modes, (n,), generator=gen)
    points = ring_modes(modes, radius)[which] + std * torch.randn(n, 2, generator=gen)
    return TensorDataset(points, which)


def mode_statistics(samples: Tensor, modes: int = 8, radius: float = 2.0, std: float = 0.05,
                    min_share: float = 0.01) -> dict[str, float]:
    """``high_quality``: share of samples within 3 std of their nearest mode; ``modes_covered``: modes
    that receive at least ``min_share`` of the samples as high-quality samples (VEEGAN's protocol).

    Args:
        samples: the (N, 2) generated points.
        modes: the ring's number of Gaussians.
        radius: the ring's radius.
        std: each Gaussian's standard deviation.
        min_share: the share of the samples a mode needs to count as covered.
    """
    centres = ring_modes(modes, radius)
    dist = torch.cdist(samples.detach().float().cpu(), centres)
    nearest, which = dist.min(1)
    good = nearest <= 3 * std
    counts = torch.bincount(which[good], minlength=modes)
    return {"modes_covered": int((counts >= min_share * len(samples)).sum()), "modes": modes,
            "high_quality": float(good.float().mean())}


def edges(x: Tensor) -> Tensor:
    """Sobel gradient magnitude per channel of the grey image, scaled to [0, 1] per image.

    Args:
        x: (N, C, H, W) images.
    """
    grey = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    kernel = torch.stack([kx, kx.T]).unsqueeze(1).to(x)
    mag = F.conv2d(grey, kernel, padding=1).pow(2).sum(1, keepdim=True).sqrt()
    return mag / mag.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)


def downsample(x: Tensor, side: int = 7) -> Tensor:
    """Block average to ``side`` x ``side``, shown again at full size (nearest): a coarse hint.

    Args:
        x: (N, C, H, W) images.
        side: the coarse images' side.
    """
    return F.interpolate(F.adaptive_avg_pool2d(x, side), size=x.shape[-2:], mode="nearest")


def greyscale(x: Tensor) -> Tensor:
    """ITU-R 601 luma of RGB images, one channel.

    Args:
        x: (N, 3, H, W) images.
    """
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


TASKS = {"edges": edges, "downsample": downsample, "colorize": greyscale}


def paired(data, task: str) -> TensorDataset:
    """``(condition, target)`` pairs from the images of ``data`` for ``task`` (a name in ``TASKS``).

    Args:
        data: a Dataset, DataLoader or ``(x, y)`` pair of images.
        task: ``"edges"``, ``"downsample"`` or ``"colorize"`` (RGB images only).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    x, _ = as_tensors(data)
    if task == "colorize" and x.shape[1] != 3:
        raise ValueError(f"'colorize' needs RGB images (N, 3, H, W); got {tuple(x.shape)}")
    return TensorDataset(TASKS[task](x), x)


__all__ = ["RING_RECIPE", "TASKS", "downsample", "edges", "greyscale", "mode_statistics", "paired", "ring_modes",
           "ring_of_gaussians"]

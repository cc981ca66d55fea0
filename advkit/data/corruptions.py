"""Common image corruptions at five severities, in the spirit of ImageNet-C and MNIST-C, batched on the input's device.

Each corruption is a plain function ``(x, severity, generator) -> Tensor`` on an NCHW float batch in
[0, 1], returning a batch of the same shape in [0, 1]; its strengths live in one table indexed by
severity 1..5. Spatial strengths are fractions of the image side, or pixels at a side of 28 scaled with
the side, so they mean about the same on MNIST and CIFAR-10. :func:`corrupt` validates the
input and seeds the generator; :data:`CORRUPTIONS` lists the functions by name.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import check_number
from ..validation import check_choice, check_images
from .jpeg import jpeg_quantise

__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt"]

SEVERITIES = (1, 2, 3, 4, 5)
#: Image side (pixels) at which the blur's sigmas and the pixelation's blocks are given.
REFERENCE_SIDE = 28

Corruption = Callable[[Tensor, int, torch.Generator], Tensor]


def gaussian_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Adds independent normal noise to every pixel and channel."""
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    return (x + sigma * _randn(x.shape, x, generator)).clamp(0, 1)


def gaussian_blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Convolves each channel with a Gaussian (separable, edges replicated)."""
    sigma = (0.6, 0.9, 1.2, 1.6, 2.0)[severity - 1] * min(x.shape[-2:]) / REFERENCE_SIDE
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = x.shape
    planes = F.pad(x.reshape(n * c, 1, h, w), (radius,) * 4, mode="replicate")
    planes = F.conv2d(F.conv2d(planes, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    return planes.view(n, c, h, w).clamp(0, 1)


def fog(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Blends in a smooth grey haze: multi-scale noise (octaves of upsampled normal noise, each finer one
    weaker by ``decay``), rescaled to [0, 1] per image, then ``(x + strength * haze) / (1 + strength)``."""
    strength, decay = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))[severity - 1]
    n, _, h, w = x.shape
    haze = torch.zeros((n, 1, h, w), dtype=x.dtype, device=x.device)
    cells, weight = 2, 1.0
    while cells <= max(h, w):
        coarse = _randn((n, 1, cells, cells), x, generator)
        haze += weight * F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        cells, weight = 2 * cells, weight / decay
    low = haze.amin(dim=(2, 3), keepdim=True)
    high = haze.amax(dim=(2, 3), keepdim=True)
    haze = (haze - low) / (high - low).clamp_min(torch.finfo(x.dtype).tiny)
    return ((x + strength * haze) / (1 + strength)).clamp(0, 1)


def contrast(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Pulls every pixel towards the image's mean (over channels and pixels) by a factor."""
    factor = (0.6, 0.45, 0.3, 0.2, 0.12)[severity - 1]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def brightness(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Adds a constant to every pixel and channel."""
    shift = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    return (x + shift).clamp(0, 1)


def pixelate(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Replaces square blocks by their mean, on a centred grid of blocks (edge blocks padded by replication).
    Blocks may end on half pixels: the image is drawn at twice the resolution and averaged back down. Blocks
    grow with the side above 28 pixels and keep their 28-pixel size below it."""
    scale = max(1.0, min(x.shape[-2:]) / REFERENCE_SIDE)
    half_pixels = round(2 * (1.5, 2, 2.5, 3, 3.5)[severity - 1] * scale)
    fine = x.repeat_interleave(2, 2).repeat_interleave(2, 3)
    h, w = fine.shape[-2:]
    top, left = -h % half_pixels // 2, -w % half_pixels // 2
    padded = F.pad(fine, (left, -w % half_pixels - left, top, -h % half_pixels - top), mode="replicate")
    blocks = F.avg_pool2d(padded, half_pixels).repeat_interleave(half_pixels, 2).repeat_interleave(half_pixels, 3)
    return F.avg_pool2d(blocks[..., top:top + h, left:left + w], 2).clamp(0, 1)


def jpeg(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """JPEG-like compression: 8x8 block DCT coefficients quantised at a JPEG quality (see :mod:`.jpeg`)."""
    quality = (30, 18, 12, 8, 5)[severity - 1]
    return jpeg_quantise(x, quality)


def affine(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """A small random rotation, zoom and translation per image (bilinear, zero fill). Each of the four
    parameters has a random sign and a magnitude between half the severity's bound and the bound."""
    degrees, zoom, shift = ((4, 0.04, 0.03), (8, 0.07, 0.05), (12, 0.1, 0.07), (16, 0.13, 0.09),
                            (20, 0.16, 0.11))[severity - 1]
    n, _, h, w = x.shape
    draw = torch.rand((n, 4), generator=generator, device=generator.device, dtype=x.dtype).to(x.device) * 2 - 1
    signed = (draw.sign() + draw) / 2  # magnitude in [0.5, 1], random sign
    angle = torch.deg2rad(signed[:, 0] * degrees)
    scale = torch.exp(-signed[:, 1] * math.log1p(zoom))  # sampling coordinates shrink when the image zooms in
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    # affine_grid works in coordinates normalised per axis; h / w and w / h keep the rotation rigid in pixels.
    theta = torch.stack([torch.stack([cos, -sin * h / w, 2 * shift * signed[:, 2]], 1),
                         torch.stack([sin * w / h, cos, 2 * shift * signed[:, 3]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def _randn(shape, x: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal draws of ``shape`` from ``generator`` (on its device), in ``x``'s dtype and on its device."""
    return torch.randn(shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


#: Every corruption by name, in a fixed order.
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian-noise": gaussian_noise,
    "gaussian-blur": gaussian_blur,
    "fog": fog,
    "contrast": contrast,
    "brightness": brightness,
    "pixelate": pixelate,
    "jpeg": jpeg,
    "affine": affine,
}


def corrupt(x: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """``x`` (NCHW, floating, values in [0, 1]) with corruption ``name`` at ``severity`` 1..5 (0 returns a copy).

    The result has ``x``'s shape, dtype and device and lies in [0, 1]; the work is batched on that
    device (half precision computes in float32). The random corruptions (gaussian-noise, fog, affine; the
    others draw nothing) draw from one ``torch.Generator`` on ``x``'s device seeded with ``seed``: the
    same call gives the same result on the same device. A sample's result depends on its own pixels,
    the seed, its index in the batch and the batch's shape, never on the other samples' pixels;
    corrupting a batch in parts therefore draws differently from corrupting it whole. The same seed
    draws the same noise at every severity, so a higher severity is the same corruption made stronger.

    Args:
        x: images (N, C, H, W), floating, in [0, 1].
        name: a name of :data:`CORRUPTIONS`.
        severity: 0 (a copy) to 5.
        seed: seeds the random corruptions' draws.

    Returns:
        The corrupted images.
    """
    check_choice(name, tuple(CORRUPTIONS), "name")
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral):
        raise TypeError(f"severity must be an integer, one of {', '.join(map(str, SEVERITIES))}; "
                        f"got {type(severity).__name__} {severity!r}")
    if not 0 <= severity <= SEVERITIES[-1]:
        raise ValueError(f"severity must be one of {', '.join(map(str, SEVERITIES))} (0 returns the images unchanged); "
                         f"got {severity}")
    seed = check_number(seed, "seed", low=0, low_open=False, integer=True)
    x = check_images(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if severity == 0:
        return x.clone()
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return CORRUPTIONS[name](work, int(severity), generator).to(x.dtype)

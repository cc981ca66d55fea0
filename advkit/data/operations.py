"""Photometric and geometric image operations for augmentation (AugMix's list and PIL's enhancers),
batched on the input's device, and AugMix-style mixing chains (Hendrycks et al., ICLR 2020).

Every operation is a plain function ``(x, parameter) -> Tensor`` on an NCHW float batch in [0, 1], with
one parameter per image (a tensor of shape (N,), or a number for all), returning a batch of the same
shape, dtype and device in [0, 1]. :data:`OPERATIONS` names each with the range its parameter takes as
the strength goes from 0 to 1 (:class:`Operation`); the signed ones (rotations, shears, translations,
enhancers) draw a random sign per image. :func:`augmix` chains them at random and mixes the chains.
Every draw comes from the ``generator`` given.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import check_number
from ..validation import check_choice, check_images

__all__ = ["OPERATIONS", "Operation", "augmix", "dirichlet"]

Parameter = Tensor | float


def _per_image(x: Tensor, value: Parameter) -> Tensor:
    """``value`` as a float tensor of shape (N, 1, 1, 1) on ``x``'s device, one value per image."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return value.expand(len(x)).reshape(-1, 1, 1, 1) if value.ndim == 0 else value.reshape(-1, 1, 1, 1)


def _grey(x: Tensor) -> Tensor:
    """The luminance (ITU-R 601-2, as PIL's "L") of RGB images, the image itself for one channel; (N, 1, H, W)."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _blend(x: Tensor, other: Tensor, factor: Parameter) -> Tensor:
    """``other + factor * (x - other)``, clamped to [0, 1]: PIL's enhancers (1 keeps x, 0 gives other)."""
    return (other + _per_image(x, factor) * (x - other)).clamp(0, 1)


def autocontrast(x: Tensor, parameter: Parameter = 0.0) -> Tensor:
    """Stretches each channel of each image linearly so that its darkest pixel is 0 and its brightest 1
    (a flat channel stays as it is); ``parameter`` is unused."""
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    flat = high - low <= 1e-6
    return torch.where(flat, x, (x - low) / torch.where(flat, torch.ones_like(high), high - low)).clamp(0, 1)


def equalize(x: Tensor, parameter: Parameter = 0.0) -> Tensor:
    """Histogram equalisation of each channel of each image over 256 levels: a pixel becomes the share of
    the channel's other pixels at or below its level (the darkest level maps to 0; a flat channel stays);
    ``parameter`` is unused."""
    n, c, h, w = x.shape
    levels = (x * 255).round().long().clamp(0, 255).view(n * c, h * w)
    counts = torch.zeros(n * c, 256, dtype=x.dtype, device=x.device)
    counts.scatter_add_(1, levels, torch.ones_like(x).view(n * c, -1))
    cdf = counts.cumsum(1)
    lowest = cdf.gather(1, levels.amin(1, keepdim=True))  # pixels at the darkest level
    spread = (h * w - lowest).clamp_min(1)
    out = ((cdf.gather(1, levels) - lowest) / spread).view(n, c, h, w)
    return torch.where((lowest == h * w).view(n, c, 1, 1), x, out).clamp(0, 1)


def posterize(x: Tensor, bits: Parameter) -> Tensor:
    """Keeps the ``bits`` (1..8, rounded) highest bits of each pixel's 8-bit value."""
    step = 2 ** (8 - _per_image(x, bits).round().clamp(1, 8))
    return (torch.floor((x * 255).round() / step) * step / 255).clamp(0, 1)


def solarize(x: Tensor, threshold: Parameter) -> Tensor:
    """Inverts (``1 - x``) every pixel above ``threshold`` (1: nothing changes, 0: all but black ones)."""
    return torch.where(x > _per_image(x, threshold), 1 - x, x)


def _warp(x: Tensor, matrix: Tensor) -> Tensor:
    """``x`` resampled (bilinear, black outside) at ``matrix @ (col, row, 1)`` for each output pixel, in
    pixel coordinates about the image's centre; ``matrix`` is (N, 2, 3)."""
    n, _, h, w = x.shape
    # affine_grid works in coordinates normalised per axis to [-1, 1]: scale pixels into them and back.
    to_unit = torch.tensor([2 / w, 2 / h], dtype=x.dtype, device=x.device)
    theta = matrix.clone()
    theta[:, :, :2] = matrix[:, :, :2] * to_unit.view(1, 2, 1) / to_unit.view(1, 1, 2)
    theta[:, :, 2] = matrix[:, :, 2] * to_unit
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def _matrices(x: Tensor, a, b, c, d, e, f) -> Tensor:
    """(N, 2, 3) matrices ``[[a, b, c], [d, e, f]]`` from per-image values or numbers."""
    rows = [torch.as_tensor(v, dtype=x.dtype, device=x.device).expand(len(x)) for v in (a, b, c, d, e, f)]
    return torch.stack(rows, 1).view(-1, 2, 3)


def rotate(x: Tensor, degrees: Parameter) -> Tensor:
    """Rotates each image about its centre by ``degrees`` counter-clockwise (as displayed, row 0 on top)."""
    angle = torch.deg2rad(torch.as_tensor(degrees, dtype=x.dtype, device=x.device))
    cos, sin = torch.cos(angle), torch.sin(angle)
    return _warp(x, _matrices(x, cos, -sin, 0, sin, cos, 0))


def shear_x(x: Tensor, factor: Parameter) -> Tensor:
    """Shears each image horizontally about its centre: the row ``r`` pixels below the centre moves
    ``factor * r`` pixels left."""
    return _warp(x, _matrices(x, 1, factor, 0, 0, 1, 0))


def shear_y(x: Tensor, factor: Parameter) -> Tensor:
    """Shears each image vertically about its centre: the column ``c`` pixels right of the centre moves
    ``factor * c`` pixels up."""
    return _warp(x, _matrices(x, 1, 0, 0, factor, 1, 0))


def translate_x(x: Tensor, fraction: Parameter) -> Tensor:
    """Moves each image right by ``fraction`` of its width (black comes in)."""
    return _warp(x, _matrices(x, 1, 0, -torch.as_tensor(fraction) * x.shape[3], 0, 1, 0))


def translate_y(x: Tensor, fraction: Parameter) -> Tensor:
    """Moves each image down by ``fraction`` of its height (black comes in)."""
    return _warp(x, _matrices(x, 1, 0, 0, 0, 1, -torch.as_tensor(fraction) * x.shape[2]))


def brightness(x: Tensor, factor: Parameter) -> Tensor:
    """Scales every pixel by ``factor`` (PIL's Brightness: a blend with black)."""
    return _blend(x, torch.zeros_like(x), factor)


def contrast(x: Tensor, factor: Parameter) -> Tensor:
    """Blends each image with the mean grey of its luminance (PIL's Contrast; 0: flat grey)."""
    return _blend(x, _grey(x).mean((1, 2, 3), keepdim=True).expand_as(x), factor)


def color(x: Tensor, factor: Parameter) -> Tensor:
    """Blends RGB images with their luminance (PIL's Color; 0: grey); other images stay as they are."""
    return _blend(x, _grey(x).expand_as(x), factor) if x.shape[1] == 3 else x.clone()


def sharpness(x: Tensor, factor: Parameter) -> Tensor:
    """Blends each image with a smoothed copy (PIL's Sharpness: the 3x3 kernel 1 1 1 / 1 5 1 / 1 1 1 over 13,
    the border pixels kept); a factor above 1 sharpens, below 1 blurs."""
    n, c, h, w = x.shape
    if h < 3 or w < 3:
        return x.clone()
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5
    smooth = x.clone()
    inner = F.conv2d(x.reshape(n * c, 1, h, w), (kernel / 13).view(1, 1, 3, 3))
    smooth[..., 1:-1, 1:-1] = inner.view(n, c, h - 2, w - 2)
    return _blend(x, smooth, factor)


@dataclass(frozen=True)
class Operation:
    """An image operation with its parameter's range: at strength ``s`` in [0, 1] an image gets
    ``function(x, low + sign * s * (high - low))``, ``sign`` drawn at random per image (+1 or -1) when
    ``signed``, else +1."""

    function: Callable[[Tensor, Parameter], Tensor]
    low: float
    high: float
    signed: bool

    def __call__(self, x: Tensor, strength: Parameter, generator: torch.Generator) -> Tensor:
        """``x`` with the operation at ``strength`` (per image, or one number for all), signs drawn
        from ``generator``."""
        s = torch.as_tensor(strength, dtype=x.dtype, device="cpu").expand(len(x))
        if self.signed:
            sign = torch.randint(0, 2, (len(x),), generator=generator, device=generator.device) * 2 - 1
            s = s * sign.to("cpu", x.dtype)
        return self.function(x, (self.low + s * (self.high - self.low)).to(x.device))


#: The operations by name, each with its parameter's range (strength 0 to 1). AugMix's own (Hendrycks et
#: al. 2020; at strength 1 their largest magnitudes: 30 degrees, shear 0.3, a third of the side; posterize
#: down to 4 bits) come first, PIL's enhancers (factors 0.1 to 1.9) after them.
OPERATIONS: dict[str, Operation] = {
    "autocontrast": Operation(autocontrast, 0.0, 0.0, False),
    "equalize": Operation(equalize, 0.0, 0.0, False),
    "posterize": Operation(posterize, 8.0, 4.0, False),
    "solarize": Operation(solarize, 1.0, 0.0, False),
    "rotate": Operation(rotate, 0.0, 30.0, True),
    "shear-x": Operation(shear_x, 0.0, 0.3, True),
    "shear-y": Operation(shear_y, 0.0, 0.3, True),
    "translate-x": Operation(translate_x, 0.0, 1 / 3, True),
    "translate-y": Operation(translate_y, 0.0, 1 / 3, True),
    "brightness": Operation(brightness, 1.0, 1.9, True),
    "contrast": Operation(contrast, 1.0, 1.9, True),
    "color": Operation(color, 1.0, 1.9, True),
    "sharpness": Operation(sharpness, 1.0, 1.9, True),
}


def _gamma(concentration: Tensor, generator: torch.Generator) -> Tensor:
    """Gamma(concentration, 1) draws, one per element, from ``generator`` (Marsaglia and Tsang's method,
    with eight proposals per draw; below 1, ``Gamma(a + 1) * U ** (1 / a)``)."""
    a = concentration + (concentration < 1).to(concentration.dtype)
    d = (a - 1 / 3).unsqueeze(-1)
    c = 1 / (9 * d).sqrt()
    normal = torch.randn((*a.shape, 8), generator=generator, dtype=a.dtype, device=generator.device).to(a.device)
    uniform = torch.rand((*a.shape, 8), generator=generator, dtype=a.dtype, device=generator.device).to(a.device)
    v = (1 + c * normal) ** 3
    accepted = (v > 0) & (uniform.clamp_min(1e-30).log() < 0.5 * normal**2 + d - d * v + d * v.clamp_min(1e-30).log())
    first = accepted.to(torch.int8).argmax(-1, keepdim=True)  # the first accepted proposal (all rejected: about 1e-10)
    draw = torch.where(accepted.any(-1, keepdim=True), (d * v).gather(-1, first), d).squeeze(-1)
    boost = torch.rand(a.shape, generator=generator, dtype=a.dtype, device=generator.device).to(a.device)
    return torch.where(concentration < 1, draw * boost.clamp_min(1e-30) ** (1 / concentration), draw)


def dirichlet(alpha: float, shape: Sequence[int], generator: torch.Generator) -> Tensor:
    """Symmetric Dirichlet(alpha) draws over the last dimension of ``shape`` (each row sums to one)."""
    draws = _gamma(torch.full(tuple(shape), float(alpha)), generator).clamp_min(1e-30)
    return draws / draws.sum(-1, keepdim=True)


def augmix(x: Tensor, generator: torch.Generator, names: Sequence[str] | None = None, *, width: int = 3,
           depth: tuple[int, int] = (1, 3), severity: float = 0.3, alpha: float = 1.0) -> Tensor:
    """AugMix (Hendrycks et al. 2020) on a batch: for every image, ``width`` chains of ``depth[0]`` to
    ``depth[1]`` operations (a number drawn per image and chain), each operation drawn uniformly from
    ``names`` (None: all of :data:`OPERATIONS`) at a strength drawn uniformly from [0, ``severity``];
    the chains' results are mixed with Dirichlet(``alpha``) weights, and the mix with the image itself
    with a Beta(``alpha``, ``alpha``) weight. Draws are per image, all from ``generator``. The defaults
    are the paper's (its severity 3 of 10 is 0.3 here). Bad arguments raise a ``ValueError``/``TypeError``
    naming them before any work.

    Args:
        x: images (N, C, H, W), floating, in [0, 1].
        generator: the source of every draw.
        names: names of :data:`OPERATIONS` to draw from (None: all).
        width: chains per image.
        depth: the least and most operations in a chain.
        severity: the largest strength, in (0, 1].
        alpha: the Dirichlet's and the Beta's concentration, above 0.

    Returns:
        The mixed images, of ``x``'s shape, dtype and device.
    """
    x = check_images(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    names = list(OPERATIONS) if names is None else [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"names must name at least one of {', '.join(OPERATIONS)} (None: all of them)")
    operations = [OPERATIONS[check_choice(name, tuple(OPERATIONS), "names")] for name in names]
    width = check_number(width, "width", low=1, low_open=False, integer=True)
    if (not isinstance(depth, tuple | list) or len(depth) != 2
            or any(isinstance(d, bool) or not isinstance(d, int) for d in depth) or not 1 <= depth[0] <= depth[1]):
        raise ValueError(f"depth must be two integers (least, most) with 1 <= least <= most; got {depth!r}")
    severity = check_number(severity, "severity", low=0, high=1)
    alpha = check_number(alpha, "alpha", low=0)
    n = len(x)
    weights = dirichlet(alpha, (n, width), generator).to(x.device, x.dtype)
    # Beta(alpha, alpha) is the first share of a Dirichlet(alpha, alpha); it keeps that much of the image.
    keep = dirichlet(alpha, (n, 2), generator)[:, 0].to(x.device, x.dtype).view(n, 1, 1, 1)
    mix = torch.zeros_like(x)
    for k in range(width):
        steps = torch.randint(depth[0], depth[1] + 1, (n,), generator=generator)
        chain = x
        for step in range(depth[1]):
            which = torch.randint(len(operations), (n,), generator=generator)
            strength = torch.rand(n, generator=generator, dtype=x.dtype) * severity
            which[steps <= step] = -1  # this image's chain has ended
            out = chain.clone()
            for j, operation in enumerate(operations):
                rows = (which == j).nonzero().squeeze(1)
                if len(rows):
                    out[rows.to(x.device)] = operation(chain[rows.to(x.device)], strength[rows], generator)
            chain = out
        mix += weights[:, k].view(n, 1, 1, 1) * chain
    return (keep * x + (1 - keep) * mix).clamp(0, 1)

"""Input transforms published as defenses: JPEG compression and bit-depth reduction (feature squeezing),
and Gaussian noise on the input (a randomized defense).

Each is an ``nn.Module`` to put in front of a classifier, ``nn.Sequential(JPEG(50), model)``. Both round,
so their input gradient is zero almost everywhere: gradient attacks on the defended model stall and
``evaluate``'s checks flag gradient masking. Attack through :class:`advkit.attacks.BPDA`, which runs the
transform forward and a differentiable stand-in backward: ``nn.Sequential(BPDA(JPEG(50)), model)`` has the
defended model's outputs and useful gradients (docs/ARCHITECTURE.md, "Non-differentiable preprocessing").
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core import check_number
from ..data.jpeg import jpeg_quantise

#: Levels of an 8-bit pixel: what a JPEG file stores and decodes to.
PIXEL_LEVELS = 256


def quantise(x: Tensor, levels: int) -> Tensor:
    """``x`` in [0, 1] rounded to the nearest of ``levels`` evenly spaced values 0, 1/(levels-1), ..., 1."""
    return x.clamp(0, 1).mul(levels - 1).round().div(levels - 1)


class JPEG(nn.Module):
    """JPEG compression at ``quality`` as a decoder sees it: the image stored as 8-bit pixels, its 8x8
    blocks' DCT coefficients quantised with the standard tables scaled to ``quality``
    (:func:`advkit.data.jpeg.jpeg_quantise`: YCbCr for three channels, no chroma subsampling), and
    decoded to 8-bit pixels again. Outputs lie in [0, 1] on the 256 levels k/255.

    Args:
        quality: the JPEG quality, an integer in 1..100 (lower: coarser quantisation).
    """

    def __init__(self, quality: int = 75):
        super().__init__()
        self.quality = check_number(quality, "quality", low=1, high=100, low_open=False, integer=True)

    def forward(self, x: Tensor) -> Tensor:
        return quantise(jpeg_quantise(quantise(x, PIXEL_LEVELS), self.quality), PIXEL_LEVELS)

    def extra_repr(self) -> str:
        return f"quality={self.quality}"


class BitDepth(nn.Module):
    """Bit-depth reduction (Xu et al. 2018, feature squeezing): each value rounded to the nearest of
    the ``2**bits`` levels k / (2**bits - 1) of [0, 1].

    Args:
        bits: bits kept per value, an integer in 1..8 (1: black or white).
    """

    def __init__(self, bits: int = 4):
        super().__init__()
        self.bits = check_number(bits, "bits", low=1, high=8, low_open=False, integer=True)

    def forward(self, x: Tensor) -> Tensor:
        return quantise(x, 2 ** self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


__all__ = ["JPEG", "BitDepth", "quantise"]


class GaussianNoise(nn.Module):
    """Fresh Gaussian noise of standard deviation ``sigma`` added to the input in every forward, eval mode
    included (noise injection, a randomized defense): ``nn.Sequential(GaussianNoise(0.2), model)``.
    Its outputs differ from forward to forward, so ``evaluate`` flags the model as randomized and attacks
    it with expectation over transformation (:func:`advkit.evaluate`).

    Args:
        sigma: the noise's standard deviation (>= 0), in pixel units of [0, 1] images.
    """

    def __init__(self, sigma: float = 0.1):
        super().__init__()
        self.sigma = float(check_number(sigma, "sigma", low_open=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn_like(x)

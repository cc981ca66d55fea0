"""JPEG-like quantisation in torch: blockwise 8x8 DCT, coefficients rounded to a quality-scaled table, inverse.

Batched matmuls against an orthonormal DCT-II basis (which is JPEG's forward DCT), on the input's
device. Three-channel images go through YCbCr with the luminance table on Y and the chrominance
table on Cb and Cr (no chroma subsampling); any other channel count uses the luminance table on
each channel. Images whose sides are not multiples of 8 are padded by edge replication, then cropped.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK = 8

#: The standard luminance and chrominance quantisation tables at quality 50, in 0..255 pixel units.
LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55), (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62), (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMA_TABLE = ((17, 18, 24, 47, 99, 99, 99, 99), (18, 21, 26, 66, 99, 99, 99, 99), (24, 26, 56, 99, 99, 99, 99, 99),
                (47, 66, 99, 99, 99, 99, 99, 99)) + ((99,) * 8,) * 4

#: RGB -> YCbCr (ITU-R BT.601, full range, as in JFIF) without the offset of Cb and Cr.
RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def dct_basis(n: int = BLOCK, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (``n x n``): ``D @ b @ D.T`` transforms a block ``b``,
    ``D.T @ c @ D`` inverts."""
    k = torch.arange(n, dtype=torch.float64).view(n, 1)
    i = torch.arange(n, dtype=torch.float64).view(1, n)
    basis = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    basis[0] /= math.sqrt(2)
    return basis.to(dtype=dtype, device=device)


def quality_table(table, quality: int) -> Tensor:
    """``table`` scaled to ``quality`` (1..100) with the IJG rule; steps are integers in 1..255."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return torch.tensor(table, dtype=torch.float64).mul(scale).add(50).div(100).floor().clamp(1, 255)


def jpeg_quantise(x: Tensor, quality: int) -> Tensor:
    """``x`` (NCHW in [0, 1]) after 8x8 block DCT quantisation at JPEG ``quality``, in [0, 1]."""
    n, c, h, w = x.shape
    colour = c == 3
    to_ycbcr, to_rgb = (torch.tensor(m, dtype=x.dtype, device=x.device) for m in (RGB_TO_YCBCR, YCBCR_TO_RGB))
    # JPEG's level shift of -128 applies to Y (or each grey plane); Cb and Cr are centred already.
    shift = torch.tensor([128.0, 0.0, 0.0] if colour else [128.0] * c, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    planes = torch.einsum("oc,nchw->nohw", to_ycbcr, x) if colour else x
    planes = F.pad(planes, (0, -w % BLOCK, 0, -h % BLOCK), mode="replicate") * 255 - shift
    hb, wb = planes.shape[2] // BLOCK, planes.shape[3] // BLOCK
    blocks = planes.view(n, c, hb, BLOCK, wb, BLOCK).transpose(3, 4)
    tables = [LUMA_TABLE, CHROMA_TABLE, CHROMA_TABLE] if colour else [LUMA_TABLE] * c
    steps = torch.stack([quality_table(t, quality) for t in tables]).to(dtype=x.dtype, device=x.device)
    steps = steps.view(1, c, 1, 1, BLOCK, BLOCK)
    basis = dct_basis(BLOCK, x.dtype, x.device)
    coefficients = torch.round(basis @ blocks @ basis.T / steps) * steps
    blocks = basis.T @ coefficients @ basis
    planes = (blocks.transpose(3, 4).reshape(n, c, hb * BLOCK, wb * BLOCK)[:, :, :h, :w] + shift) / 255
    out = torch.einsum("oc,nchw->nohw", to_rgb, planes) if colour else planes
    return out.clamp(0, 1)

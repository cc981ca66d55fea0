"""The corruptions of ``advkit.defenses``: shape, dtype and range kept, deterministic under a seed,
a sample's result independent of the other samples' pixels, stronger with severity, clear errors,
and each corruption doing what its name says (JPEG checked against Pillow's encoder)."""
from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from advkit.data.jpeg import dct_basis, jpeg_quantise
from advkit.defenses import CORRUPTIONS, corrupt

NAMES = list(CORRUPTIONS)
#: The corruptions that draw random numbers; the others ignore the seed.
RANDOM = {"gaussian-noise", "fog", "affine"}


def colour_images(n: int = 6, h: int = 21, w: int = 30, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images with sides that are not multiples of 8, some pixels at exactly 0 and 1."""
    coarse = torch.rand((n, 3, 5, 6), generator=torch.Generator().manual_seed(seed)) * 1.4 - 0.2
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def digits(test_batch):
    return test_batch[0][:200]


def test_registry_lists_every_corruption_of_the_issue_in_order():
    assert NAMES == ["gaussian-noise", "gaussian-blur", "fog", "contrast", "brightness", "pixelate", "jpeg", "affine"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_shape_dtype_device_and_range_are_kept(name, dtype):
    for x in (colour_images().to(dtype), colour_images(n=3, h=28, w=28)[:, :1].to(dtype)):
        for severity in (1, 3, 5):
            out = corrupt(x, name, severity)
            assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
            assert float(out.min()) >= 0 and float(out.max()) <= 1
            assert not torch.equal(out, x)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result_and_a_new_seed_draws_anew(name):
    x = colour_images()
    first = corrupt(x, name, 3, seed=7)
    assert torch.equal(first, corrupt(x, name, 3, seed=7))
    assert torch.equal(first, corrupt(x, name, 3, seed=8)) == (name not in RANDOM)


@pytest.mark.parametrize("name", NAMES)
def test_a_sample_does_not_depend_on_the_other_samples_pixels(name):
    x = colour_images()
    other = x.clone()
    other[1:] = colour_images(seed=1)[1:]
    assert torch.equal(corrupt(x, name, 4, seed=3)[0], corrupt(other, name, 4, seed=3)[0])


@pytest.mark.parametrize("name", NAMES)
def test_a_higher_severity_moves_the_images_further(name, digits):
    for x in (digits, colour_images(n=16)):
        for seed in ((0, 1, 2) if name in RANDOM else (0,)):
            change = [float((corrupt(x, name, s, seed) - x).abs().mean()) for s in range(6)]
            assert change[0] == 0
            assert all(a < b for a, b in itertools.pairwise(change)), change


def test_severity_zero_returns_a_copy():
    x = colour_images()
    out = corrupt(x, "fog", 0)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_bad_arguments_raise_clear_errors():
    x = colour_images()
    with pytest.raises(ValueError, match="name must be one of 'gaussian-noise', 'gaussian-blur'.*got 'snow'"):
        corrupt(x, "snow", 1)
    for severity in (6, -1):
        with pytest.raises(ValueError, match=f"severity must be one of 1, 2, 3, 4, 5 .*got {severity}"):
            corrupt(x, "fog", severity)
    for severity in (2.0, True, "2"):
        with pytest.raises(TypeError, match="severity must be an integer"):
            corrupt(x, "fog", severity)
    with pytest.raises(ValueError, match="seed must be a finite integer >= 0"):
        corrupt(x, "fog", 1, seed=-1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        corrupt(x.numpy(), "fog", 1)
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        corrupt((x * 255).to(torch.uint8), "fog", 1)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        corrupt(x * 255, "fog", 1)
    with pytest.raises(ValueError, match=r"x must be a batch of images of shape \(N, C, H, W\)"):
        corrupt(x.flatten(1), "fog", 1)


def test_each_function_is_callable_directly_with_a_generator():
    x = colour_images()
    for name, function in CORRUPTIONS.items():
        out = function(x, 2, torch.Generator().manual_seed(5))
        assert torch.equal(out, corrupt(x, name, 2, seed=5)), name


def test_fog_is_a_smooth_haze():
    """On black images fog leaves only its haze: it spans a range and varies slowly from pixel to pixel
    (white noise of the same range would change by about a third of it between neighbours)."""
    haze = corrupt(torch.zeros(8, 1, 32, 32), "fog", 3)
    spread = haze.amax(dim=(2, 3)) - haze.amin(dim=(2, 3))
    strength = 0.75  # severity 3
    assert torch.allclose(spread, torch.full_like(spread, strength / (1 + strength)), atol=1e-6)
    step = (haze[..., 1:] - haze[..., :-1]).abs().mean(dim=(1, 2, 3))
    assert bool((step < 0.1 * spread.squeeze(1)).all()), step


def test_contrast_keeps_each_images_mean_and_shrinks_its_spread():
    x = colour_images()
    out = corrupt(x, "contrast", 2)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6)
    assert bool((out.std(dim=(1, 2, 3)) < 0.6 * x.std(dim=(1, 2, 3))).all())


def test_pixelate_makes_flat_blocks():
    """At severity 2 on a 28-pixel side the blocks are 2 pixels wide on a grid centred in the image."""
    x = torch.rand((2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    out = corrupt(x, "pixelate", 2)
    blocks = out.unfold(2, 2, 2).unfold(3, 2, 2)
    assert torch.allclose(blocks, blocks.mean(dim=(-2, -1), keepdim=True).expand_as(blocks), atol=1e-6)
    assert torch.allclose(blocks[..., 0, 0], F.avg_pool2d(x, 2), atol=1e-6)


def centroid_and_angle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Intensity-weighted centre (column, row, in pixels) and principal-axis angle (degrees) of each image."""
    h, w = x.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    mass = x[:, 0].sum(dim=(1, 2))
    cx, cy = ((x[:, 0] * c).sum(dim=(1, 2)) / mass for c in (cols, rows))
    dx, dy = cols - cx.view(-1, 1, 1), rows - cy.view(-1, 1, 1)
    sxx, syy, sxy = ((x[:, 0] * a * b).sum(dim=(1, 2)) for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    return cx, cy, torch.rad2deg(0.5 * torch.atan2(2 * sxy, sxx - syy))


def test_affine_shifts_and_rotates_within_its_bounds_on_non_square_images():
    """A horizontal bar in the middle of a 40x60 image, at severity 5 (20 degrees, zoom 16%, shifts of 11% of
    each side): each image turns by 10..20 degrees, in both directions, and its centre moves by the shift
    vector, of length 5.5..11% of the diagonal, rotated and scaled by the zoom (8..16%). A rotation that is
    not rigid in pixels (as in affine_grid's coordinates, normalised per axis) would turn the bar too far."""
    h, w = 40, 60
    x = torch.zeros(64, 1, h, w, dtype=torch.float64)
    x[:, :, 18:22, 14:46] = 1
    cx0, cy0, angle0 = centroid_and_angle(x)
    cx, cy, angle = centroid_and_angle(corrupt(x, "affine", 5, seed=1))
    turn = angle - angle0
    assert bool(((turn.abs() > 10 - 0.5) & (turn.abs() < 20 + 0.5)).all()), turn
    assert bool((turn > 0).any() and (turn < 0).any())
    moved = torch.hypot(cx - cx0, cy - cy0)
    diagonal = math.hypot(h, w)
    assert bool(((moved > 0.055 * diagonal / 1.16 - 0.2) & (moved < 0.11 * diagonal * 1.16 + 0.2)).all()), moved


def test_dct_basis_is_orthonormal():
    basis = dct_basis(8, torch.float64)
    assert torch.allclose(basis @ basis.T, torch.eye(8, dtype=torch.float64), atol=1e-12)


def test_jpeg_at_quality_100_is_nearly_lossless():
    """Every step is 1 (pixel units of 1/255): rounding moves each coefficient by at most 1/2, so a block of
    64 coefficients moves by at most 4/255 in the L2 norm, and no pixel by more."""
    x = colour_images()
    assert float((jpeg_quantise(x, 100) - x).abs().max()) <= 4 / 255


def pillow_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image of ``x`` encoded and decoded by Pillow at ``quality`` without chroma subsampling."""
    out = []
    for image in x:
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
            buffer, format="JPEG", quality=quality, subsampling=0)
        decoded = torch.tensor(np.array(Image.open(io.BytesIO(buffer.getvalue()))), dtype=torch.float32) / 255
        out.append(decoded.permute(2, 0, 1) if decoded.ndim == 3 else decoded[None])
    return torch.stack(out)


@pytest.mark.parametrize("quality", [30, 12, 5])
def test_jpeg_matches_pillow(quality, digits):
    """Our quantisation lands close to a real JPEG encoder's output, grey and colour, on sides that are not
    multiples of 8; the gap left (libjpeg's integer DCT and 8-bit YCbCr) is a small part of the distortion."""
    for x in (digits[:50], colour_images()):
        x = (x * 255).round() / 255
        theirs = pillow_jpeg(x, quality)
        gap = float((jpeg_quantise(x, quality) - theirs).abs().mean())
        assert gap < 0.3 * float((theirs - x).abs().mean())

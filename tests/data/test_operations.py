"""The augmentation operations and AugMix's mixing chains (advkit.data.operations): shape, dtype, device
and range kept, the same generator state the same result, each operation doing what its name says on a
constructed image (Pillow's own for posterize, solarize, autocontrast and the enhancers), and the
mixing weights drawn from the Dirichlet and Beta they should be."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from advkit.data import operations as ops
from advkit.data.operations import OPERATIONS, augmix, dirichlet


def colour_images(n: int = 6, c: int = 3, h: int = 12, w: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random images, some pixels at exactly 0 and 1."""
    coarse = torch.rand((n, c, 4, 5), generator=torch.Generator().manual_seed(seed)) * 1.4 - 0.2
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def dot(h: int = 7, w: int = 7, row: int = 1, col: int = 5) -> torch.Tensor:
    """A black grey image (1, 1, h, w) with one white pixel."""
    x = torch.zeros(1, 1, h, w)
    x[0, 0, row, col] = 1
    return x


def pil(x: torch.Tensor) -> Image.Image:
    """The first image of x as an 8-bit RGB PIL image (x must hold multiples of 1/255)."""
    return Image.fromarray((x[0].permute(1, 2, 0) * 255).round().byte().numpy())


def tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).float() / 255


@pytest.mark.parametrize("name", list(OPERATIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_operation_keeps_shape_dtype_and_range_and_follows_the_generator(name, channels):
    x = colour_images(c=channels).double()
    strength = torch.linspace(0, 1, len(x))
    out = OPERATIONS[name](x, strength, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, OPERATIONS[name](x, strength, torch.Generator().manual_seed(3)))
    if OPERATIONS[name].low != OPERATIONS[name].high:  # strength 0 leaves the images as they are (in 8 bits)
        assert torch.allclose(OPERATIONS[name](x, 0.0, torch.Generator()), x, atol=0.51 / 255)


def test_the_geometric_operations_move_a_known_pixel():
    x = dot()  # white at row 1, column 5 of 7: 2 above and 2 right of the centre
    assert torch.allclose(ops.rotate(x, 90.0), dot(row=1, col=1), atol=1e-5)  # counter-clockwise
    assert torch.allclose(ops.rotate(x, -90.0), dot(row=5, col=5), atol=1e-5)
    assert torch.allclose(ops.translate_x(x, -3 / 7), dot(row=1, col=2), atol=1e-6)
    assert torch.allclose(ops.translate_y(x, 2 / 7), dot(row=3, col=5), atol=1e-6)
    assert torch.allclose(ops.shear_x(x, 0.5), dot(row=1, col=6), atol=1e-6)  # 2 rows above: 1 pixel right
    assert torch.allclose(ops.shear_y(x, -1.0), dot(row=3, col=5), atol=1e-6)  # 2 columns right: 2 pixels down
    both = torch.cat([x, x])  # one parameter per image
    assert torch.allclose(ops.rotate(both, torch.tensor([90.0, 0.0])), torch.cat([dot(row=1, col=1), x]), atol=1e-5)


def test_the_photometric_operations_match_pillow():
    x = (colour_images(n=1, h=9, w=11) * 255).round() / 255
    image = pil(x)
    assert torch.equal(ops.posterize(x, 3), tensor(ImageOps.posterize(image, 3)))
    assert torch.allclose(ops.solarize(x, 0.5), tensor(ImageOps.solarize(image, 128)), atol=1e-6)
    assert torch.allclose(ops.autocontrast(x), tensor(ImageOps.autocontrast(image)), atol=1.01 / 255)
    for op, enhancer in ((ops.brightness, ImageEnhance.Brightness), (ops.contrast, ImageEnhance.Contrast),
                         (ops.color, ImageEnhance.Color), (ops.sharpness, ImageEnhance.Sharpness)):
        for factor in (0.3, 1.6):
            assert torch.allclose(op(x, factor), tensor(enhancer(image).enhance(factor)), atol=2.01 / 255), op


def test_solarize_inverts_above_the_threshold_and_equalize_spreads_the_levels():
    x = torch.tensor([0.1, 0.4, 0.6, 0.9]).view(1, 1, 2, 2)
    assert torch.allclose(ops.solarize(x, 0.5), torch.tensor([0.1, 0.4, 0.4, 0.1]).view(1, 1, 2, 2))
    assert torch.equal(ops.solarize(x, 1.0), x)
    assert torch.allclose(ops.equalize(x * 0.2 + 0.3), torch.tensor([0, 1 / 3, 2 / 3, 1]).view(1, 1, 2, 2), atol=1e-6)
    assert torch.equal(ops.equalize(torch.full((1, 1, 2, 2), 0.3)), torch.full((1, 1, 2, 2), 0.3))  # flat stays
    grey = colour_images(c=1)
    assert torch.equal(ops.color(grey, 0.0), grey)  # no colour to take away


def test_the_mixing_weights_sum_to_one_and_follow_their_distributions():
    g = torch.Generator().manual_seed(0)
    for alpha in (0.5, 1.0, 3.0):
        w = dirichlet(alpha, (20000, 3), g)
        assert bool((w >= 0).all()) and torch.allclose(w.sum(1), torch.ones(20000))
        # Dirichlet(alpha, alpha, alpha): mean 1/3, variance (1/3)(2/3)/(3 alpha + 1); sd of the estimate < 0.003
        assert torch.allclose(w.mean(0), torch.full((3,), 1 / 3), atol=0.01)
        assert torch.allclose(w.var(0), torch.full((3,), 2 / 9 / (3 * alpha + 1)), rtol=0.05)


def test_augmix_keeps_range_follows_the_generator_and_mixes_with_the_image():
    x = colour_images(n=40)
    out = augmix(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, augmix(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, augmix(x, torch.Generator().manual_seed(2)))
    assert (out != x).flatten(1).any(1).all()
    # One operation that only scales the pixels: the mix is the image scaled by a convex mix of the factors.
    scaled = augmix(x, torch.Generator().manual_seed(1), ["brightness"], width=2, depth=(1, 1), severity=0.5)
    ratio = scaled.flatten(1).sum(1) / x.flatten(1).sum(1)
    assert bool(((ratio > 0.55 - 1e-5) & (ratio < 1.45 + 1e-5)).all())


@pytest.mark.parametrize(("bad", "error", "message"), [
    ({"names": ["rotate", "twirl"]}, ValueError, "names must be one of 'autocontrast'.*got 'twirl'"),
    ({"names": []}, ValueError, "names must name at least one of autocontrast"),
    ({"width": 0}, ValueError, "width must be a finite integer >= 1, got 0"),
    ({"depth": (2, 1)}, ValueError, r"depth must be two integers \(least, most\) with 1 <= least <= most; got \(2, 1"),
    ({"severity": 1.5}, ValueError, "severity must be a finite number > 0 and <= 1, got 1.5"),
    ({"alpha": 0}, ValueError, "alpha must be a finite number > 0, got 0"),
    ({"x": torch.rand(2, 4)}, ValueError, r"x must be a batch of images of shape \(N, C, H, W\), got shape \(2, 4\)"),
])
def test_augmix_refuses_bad_arguments_by_name(bad, error, message):
    x = bad.pop("x", colour_images(n=2))
    with pytest.raises(error, match=message):
        augmix(x, torch.Generator(), **bad)

"""BPDA runs the transform forward and its stand-in backward; gradient attacks through it keep their
guarantees; the JPEG and bit-depth defenses give [0, 1] outputs on their levels and mask the gradient."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from advkit.attacks import APGD, BPDA, PGD
from advkit.core import get_norm
from advkit.data.jpeg import jpeg_quantise
from advkit.defenses import JPEG, BitDepth

TRANSFORMS = [JPEG(50), JPEG(90), BitDepth(1), BitDepth(4)]


def images(n: int = 8, size: int = 8, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def tiny_model() -> nn.Module:
    """A linear classifier behind BatchNorm in train mode: the attack must leave both as they were."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(64), nn.Linear(64, 10)).train()


@pytest.mark.parametrize("transform", TRANSFORMS, ids=repr)
def test_the_forward_is_the_transforms_and_the_identity_backward_passes_the_gradient_on(transform):
    x = images().requires_grad_(True)
    out = BPDA(transform)(x)
    assert torch.equal(out, transform(x.detach()))
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, upstream)
    assert torch.equal(grad, upstream)


def test_the_backward_is_the_stand_ins_gradient():
    x = images().requires_grad_(True)
    approx = nn.Sigmoid()
    out = BPDA(BitDepth(3), approx)(x)
    assert torch.equal(out, BitDepth(3)(x.detach()))
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (expected,) = torch.autograd.grad(approx(x), x, upstream)
    assert torch.allclose(grad, expected)
    (tripled,) = torch.autograd.grad(BPDA(BitDepth(3), lambda t: 3 * t)(x).sum(), x)  # a plain function
    assert torch.equal(tripled, torch.full_like(x, 3.0))


def test_the_transforms_mask_the_gradient_and_bpda_gives_it_back():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = images(channels=1).requires_grad_(True)
    for transform in (JPEG(50), BitDepth(4)):
        (masked,) = torch.autograd.grad(model(transform(x)).sum(), x)
        (through,) = torch.autograd.grad(model(BPDA(transform)(x)).sum(), x)
        assert not masked.any() and through.abs().sum(1).gt(0).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("cls", [PGD, APGD])
def test_a_gradient_attack_through_bpda_stays_in_the_ball_and_box_and_leaves_the_model_unchanged(cls, norm):
    model = tiny_model()
    defended = nn.Sequential(BPDA(JPEG(50)), model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = images(16)
    eps = 0.1 if norm == "linf" else 0.5
    result = cls(defended, eps, steps=5, norm=norm).run(x)
    assert torch.equal(model.state_dict()["1.running_mean"], before["1.running_mean"])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert get_norm(norm).distance(result.x_adv - x).max() <= eps + 1e-5
    assert 0 <= result.x_adv.min() and result.x_adv.max() <= 1
    assert (result.x_adv != x).flatten(1).any(1).all()  # the gradient moved every sample
    assert result.backwards > 0


@pytest.mark.parametrize("quality", [10, 50, 95])
@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_gives_8_bit_pixels_in_the_box_close_to_the_quantiser(quality, channels):
    x = images(4, size=12, channels=channels)  # 12: padded to 16 and cropped back
    out = JPEG(quality)(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, (out * 255).round() / 255)  # the 256 levels k/255
    assert (out - jpeg_quantise((x * 255).round() / 255, quality)).abs().max() <= 0.5 / 255 + 1e-6
    assert torch.equal(JPEG(quality)(out), JPEG(quality)(out.clone()))  # deterministic


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_bit_depth_keeps_2_to_the_bits_levels_nearest_the_input(bits):
    levels = 2 ** bits - 1
    x = torch.linspace(0, 1, 1001).view(1, 1, 7, 143)
    out = BitDepth(bits)(x)
    assert torch.equal(out * levels, (out * levels).round()) and 0 <= out.min() and out.max() <= 1
    assert len(out.unique()) == levels + 1
    assert (out - x).abs().max() <= 0.5 / levels + 1e-6


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: JPEG(0), ValueError, "quality must be a finite integer >= 1 and <= 100, got 0"),
    (lambda: JPEG(50.5), TypeError, "quality must be an integer"),
    (lambda: BitDepth(9), ValueError, "bits must be a finite integer >= 1 and <= 8, got 9"),
    (lambda: BPDA("jpeg"), TypeError, "transform must be a module or a function of a batch, got str"),
    (lambda: BPDA(JPEG(50), approx=1.0), TypeError, "approx must be None"),
])
def test_bad_settings_are_refused_naming_the_argument(make, error, message):
    with pytest.raises(error, match=message):
        make()

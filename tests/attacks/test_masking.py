"""Gradient masking: a model whose output carries no input gradient makes every gradient attack
raise GradientMaskingError (naming the problem and the gradient-free attack), never a raw
autograd error or a silent weak result; Square, which needs no gradient, still runs on it."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from advkit.attacks import APGD, APGDT, CW, FGSM, MIFGSM, PGD, GradientMaskingError, Square, from_torchattacks

sys.path.insert(0, str(Path(__file__).parents[1]))  # pytest runs with --import-mode=importlib
from masked import MASKED, NoGrad  # noqa: E402


def net() -> nn.Module:
    torch.default_generator.manual_seed(0)  # the CPU generator alone: see test_guarantees.tiny_model
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


GRADIENT_ATTACKS = {
    "pgd": lambda m: PGD(m, eps=0.1, steps=3),
    "pgd-no-random-start": lambda m: PGD(m, eps=0.1, steps=3, random_start=False),
    "fgsm": lambda m: FGSM(m, eps=0.1), "apgd": lambda m: APGD(m, eps=0.1, steps=3),
    "apgd-t": lambda m: APGDT(m, eps=0.1, steps=3, n_target_classes=2), "mifgsm": lambda m: MIFGSM(m, eps=0.1, steps=3),
    "cw": lambda m: CW(m, steps=3, binary_steps=1), "cw-bounded": lambda m: CW(m, eps=1.0, steps=3, binary_steps=1),
}


def batch(n: int = 6):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 10


@pytest.mark.parametrize("masking", sorted(MASKED))
@pytest.mark.parametrize("attack", sorted(GRADIENT_ATTACKS))
def test_gradient_attacks_raise_a_clear_gradient_masking_error(attack, masking):
    x, y = batch()
    atk = GRADIENT_ATTACKS[attack](MASKED[masking](net()))
    with pytest.raises(GradientMaskingError, match=r"gradient masking.*gradient-free attack.*Square"):
        atk.run(x, y)


def test_cw_raises_although_its_loss_has_a_gradient_through_the_distance():
    """CW's loss is ||x' - x||^2 + c * margin: the distance alone has a gradient, so without the
    check CW would run and only shrink the perturbation (it used to return 6% success)."""
    x, y = batch()
    with pytest.raises(GradientMaskingError):
        CW(NoGrad(net()), steps=5, binary_steps=2)(x, y)


@pytest.mark.parametrize("masking", sorted(MASKED))
def test_square_runs_on_a_masked_model(masking):
    x, y = batch(8)
    model = MASKED[masking](net())
    with torch.no_grad():
        y = model(x).argmax(1)
    res = Square(model, eps=0.3, n_queries=100).run(x, y)
    assert res.backwards == 0 and float((res.x_adv - x).abs().max()) <= 0.3 + 1e-6
    with torch.no_grad():
        assert torch.equal(res.success, model(res.x_adv).argmax(1) != y)
    if masking != "argmax-one-hot":  # informative logits behind the mask: random search breaks a linear model
        assert res.success.float().mean() >= 0.5


def test_a_masked_model_with_the_error_is_left_as_it_was():
    model = NoGrad(net()).train()
    with pytest.raises(GradientMaskingError):
        PGD(model, eps=0.1, steps=2)(*batch())
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_torchattacks_attack_on_a_masked_model_raises_the_same_error(torchattacks):
    x, y = batch()
    with pytest.raises(GradientMaskingError, match="gradient masking"):
        from_torchattacks(torchattacks.PGD(NoGrad(net()), eps=0.1, steps=2)).run(x, y)


@pytest.mark.parametrize("attack", sorted(GRADIENT_ATTACKS))
def test_an_ordinary_model_raises_nothing_and_is_attacked(attack):
    """The same attacks on the unmasked network: no error, gradients taken, and (measured) 3 of the 6
    samples fooled by every one of them, each fooled sample moved and judged on the returned tensor."""
    x, y = batch()
    model = net()
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), y)  # the samples start correctly classified
    res = GRADIENT_ATTACKS[attack](model).run(x, y)
    with torch.no_grad():
        assert torch.equal(res.success, model(res.x_adv).argmax(1) != y)
    assert res.backwards > 0 and int(res.success.sum()) >= 2
    assert bool(((res.x_adv - x).flatten(1).abs().amax(1) > 0)[res.success].all())


def test_linf_eps_in_pixel_units_warns():
    with pytest.warns(UserWarning, match=r"eps=8 exceeds 1.*8/255"):
        PGD(net(), eps=8)
    with pytest.warns(UserWarning, match="exceeds 1"):
        FGSM(net(), eps=0.1).run(*batch(), eps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PGD(net(), eps=8 / 255)  # a budget in [0, 1]: no warning
        PGD(net(), eps=3.0, norm="l2")  # L2 budgets above 1 are ordinary

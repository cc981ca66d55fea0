"""Expectation over transformation (``eot``) in the gradient attacks: eot=1 is today's attack, eot=k
costs k forwards and k backwards per sample and step, a deterministic model gets the same search, and
attacks whose gradients do not come from AttackRun's objective refuse eot > 1."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from advkit.attacks import APGD, ATTACKS, PGD, Square
from advkit.defenses import GaussianNoise


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def Noisy(sigma: float = 0.3) -> nn.Module:  # noqa: N802 (a model, named as one)
    """:func:`net` behind Gaussian noise on the input in every forward (eval mode included)."""
    return nn.Sequential(GaussianNoise(sigma), net())


def batch(n: int = 16):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 10


@pytest.mark.parametrize("name", sorted(n for n, cls in ATTACKS.items() if cls.supports_eot))
def test_eot_1_is_the_single_draw_attack(name):
    x, y = batch()
    plain, one = ATTACKS[name](net(), 0.1).run(x, y), ATTACKS[name](net(), 0.1, eot=1).run(x, y)
    assert torch.equal(plain.x_adv, one.x_adv) and torch.equal(plain.success, one.success)
    assert (plain.forwards, plain.backwards) == (one.forwards, one.backwards)


@pytest.mark.parametrize("cls", [PGD, APGD])
def test_eot_on_a_deterministic_model_is_the_same_search(cls):
    """Two equal draws average to the same gradient exactly: the same iterates and verdicts, twice the passes."""
    x, y = batch()
    one, two = cls(net(), 0.1, steps=5).run(x, y), cls(net(), 0.1, steps=5, eot=2).run(x, y)
    assert torch.equal(one.x_adv, two.x_adv) and torch.equal(one.success, two.success)
    assert two.backwards == 2 * one.backwards


@pytest.mark.parametrize("k", [1, 3])
def test_eot_k_costs_k_passes_per_step(k):
    """PGD without early stopping, ``steps`` steps on n samples: one clean forward, k forwards and k
    backwards per sample and step, and with k > 1 one fresh forward per sample that judges the result
    (with 1, only the rows no forward judged)."""
    x, y = batch()
    n, steps = len(x), 4
    res = PGD(Noisy(), 0.1, steps=steps, early_stop=False, eot=k).run(x, y)
    assert res.backwards == steps * k * n
    judged = res.forwards - n - steps * k * n  # the result's judge: all n rows with k > 1, the unsettled ones with 1
    assert judged == n if k > 1 else 0 <= judged <= n


def test_eot_stays_in_the_ball_and_box_and_leaves_the_model_unchanged():
    model, (x, y) = Noisy().train(), batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        res = APGD(model, eps, steps=5, norm=norm, eot=4).run(x, y)
        dist = (res.x_adv - x).flatten(1)
        size = dist.abs().amax(1) if norm == "linf" else dist.norm(dim=1)
        assert float(size.max()) <= eps + 1e-6 and 0 <= float(res.x_adv.min()) and float(res.x_adv.max()) <= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training


def test_eot_needs_an_attack_that_supports_it():
    with pytest.raises(ValueError, match=r"eot=2: Square does not average its gradients over draws"):
        Square(net(), 0.1, eot=2)
    with pytest.raises(ValueError, match="eot"):
        PGD(net(), 0.1, eot=0)
    assert "eot=5" in repr(PGD(net(), 0.1, eot=5)) and "eot" not in repr(PGD(net(), 0.1))

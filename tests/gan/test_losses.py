"""Each GAN loss against its textbook formula on known logits, and WGAN-GP's per-sample penalty."""
from __future__ import annotations

import math

import pytest
import torch

from advkit.gan import losses

REAL = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0], dtype=torch.float64)
FAKE = torch.tensor([2.5, -1.2, 0.3, -4.0, 0.0], dtype=torch.float64)
sig = torch.sigmoid


def mean(values) -> float:
    return sum(values) / len(values)


def test_minimax_discriminator_is_binary_cross_entropy():
    expected = -mean([math.log(sig(r)) for r in REAL]) - mean([math.log(1 - sig(f)) for f in FAKE])
    assert float(losses.d_minimax(REAL, FAKE)) == pytest.approx(expected, rel=1e-12)


def test_minimax_generator_is_log_one_minus_d():
    expected = mean([math.log(1 - sig(f)) for f in FAKE])
    assert float(losses.g_minimax(FAKE)) == pytest.approx(expected, rel=1e-12)


def test_non_saturating_generator_is_minus_log_d():
    expected = -mean([math.log(sig(f)) for f in FAKE])
    assert float(losses.g_non_saturating(FAKE)) == pytest.approx(expected, rel=1e-12)


def test_softplus_stays_finite_on_extreme_logits():
    big = torch.tensor([-200.0, 200.0], dtype=torch.float64)
    assert torch.isfinite(losses.d_minimax(big, big)) and torch.isfinite(losses.g_minimax(big))
    assert float(losses.g_non_saturating(torch.tensor([-200.0], dtype=torch.float64))) == pytest.approx(200.0)


def test_wasserstein_and_hinge():
    assert float(losses.d_wasserstein(REAL, FAKE)) == pytest.approx(mean(FAKE.tolist()) - mean(REAL.tolist()))
    assert float(losses.g_wasserstein(FAKE)) == pytest.approx(-mean(FAKE.tolist()))
    expected = mean([max(0.0, 1 - r) for r in REAL.tolist()]) + mean([max(0.0, 1 + f) for f in FAKE.tolist()])
    assert float(losses.d_hinge(REAL, FAKE)) == pytest.approx(expected)


def test_least_squares():
    expected_d = 0.5 * mean([(r - 1) ** 2 for r in REAL.tolist()]) + 0.5 * mean([f ** 2 for f in FAKE.tolist()])
    assert float(losses.d_least_squares(REAL, FAKE)) == pytest.approx(expected_d)
    assert float(losses.g_least_squares(FAKE)) == pytest.approx(0.5 * mean([(f - 1) ** 2 for f in FAKE.tolist()]))


def test_registry_names_and_constraints():
    assert set(losses.GAN_LOSSES) == {"minimax", "non-saturating", "wgan", "wgan-gp", "hinge", "lsgan"}
    assert [(name, loss.clip, loss.penalty) for name, loss in losses.GAN_LOSSES.items()
            if loss.clip or loss.penalty] == [("wgan", True, False), ("wgan-gp", False, True)]
    assert losses.GAN_LOSSES["hinge"].g is losses.g_wasserstein
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.gan_loss("vanilla")


def test_gradient_penalty_uses_per_sample_norms():
    # critic f(x) = |x|^2 / 2 per sample has gradient x; with real == fake the interpolate is x itself,
    # so the penalty is the mean over samples of (|x_i| - 1)^2, not (|whole batch| - 1)^2.
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.6, 0.8], [0.0, 0.0]], dtype=torch.float64)
    penalty = losses.gradient_penalty(lambda t: 0.5 * t.pow(2).sum(1), x, x.clone(), torch.Generator().manual_seed(0))
    assert float(penalty.detach()) == pytest.approx(mean([16.0, 0.0, 0.0, 1.0]))


def test_gradient_penalty_is_differentiable_for_the_critic():
    w = torch.tensor([2.0, 0.0], requires_grad=True)
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    penalty = losses.gradient_penalty(lambda t: t @ w, real, fake)
    (grad,) = torch.autograd.grad(penalty, w)
    assert float(penalty.detach()) == pytest.approx(1.0) and torch.allclose(grad, torch.tensor([2.0, 0.0]))


def test_flat_logits_accepts_n_and_n1_only():
    assert losses.flat_logits(torch.zeros(4, 1)).shape == (4,)
    with pytest.raises(ValueError, match="one logit per sample"):
        losses.flat_logits(torch.zeros(4, 2))

"""Randomized smoothing (advkit/smoothing.py): CERTIFY and PREDICT against the paper (Cohen, Rosenfeld & Kolter
2019, Algorithms 1 and 2) on the same noise draws, the closed forms they reduce to, and the library's guarantees."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binomtest, norm
from torch import nn

from advkit.defenses import ABSTAIN, Certificate, certify, predict_smoothed


class Constant(nn.Module):
    """Always the same logits, whatever the noise: class 2 of 3."""

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.0, 1.0, 3.0]))

    def forward(self, x):
        return self.logits.expand(len(x), 3)


class CoinFlip(nn.Module):
    """Class 0 when the pixels' sum lies above its value at the grey image, else class 1: under noise on the
    grey image the top class alternates 50/50."""

    def forward(self, x):
        s = (x - 0.5).flatten(1).sum(1, keepdim=True)
        return torch.cat([s, -s], 1)


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def paper_certify(model, x, sigma, n0, n, alpha, seed):
    """Algorithm 1 (CERTIFY) of Cohen et al., transcribed image by image, on the draws advkit makes when one
    forward takes every draw of a phase: ``randn`` of all the selection draws (image-major), then all the
    estimation draws, from a generator seeded ``seed``. The Clopper-Pearson bound here is scipy's exact
    binomial interval at confidence 1 - 2 alpha (its lower end), as the paper's code takes statsmodels'."""
    g = torch.Generator().manual_seed(seed)
    noise0 = torch.randn((len(x) * n0, *x.shape[1:]), generator=g).view(len(x), n0, *x.shape[1:])
    noise = torch.randn((len(x) * n, *x.shape[1:]), generator=g).view(len(x), n, *x.shape[1:])
    predictions, radii, counts = [], [], []
    with torch.no_grad():
        for i in range(len(x)):
            counts0 = torch.bincount(model(x[i] + sigma * noise0[i]).argmax(1), minlength=3)
            c_a = int(counts0.argmax())
            n_a = int((model(x[i] + sigma * noise[i]).argmax(1) == c_a).sum())
            p_a = binomtest(n_a, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
            counts.append(n_a)
            if p_a < 0.5:
                predictions.append(ABSTAIN)
                radii.append(0.0)
            else:
                predictions.append(c_a)
                radii.append(sigma * norm.ppf(p_a))
    return predictions, radii, counts


def test_certify_equals_the_papers_algorithm_on_the_same_draws():
    model, x = linear(), torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    for sigma, seed in ((0.25, 0), (1.0, 3)):
        cert = certify(model, x, sigma=sigma, n0=20, n=300, alpha=0.01, batch_size=6 * 300, seed=seed,
                       progress=False)
        predictions, radii, counts = paper_certify(model, x, sigma, 20, 300, 0.01, seed)
        assert cert.prediction.tolist() == predictions and cert.counts.tolist() == counts
        assert cert.radius.tolist() == pytest.approx(radii, abs=1e-6)
    assert ABSTAIN in cert.prediction.tolist() and (cert.radius > 0).any()  # sigma 1 meets both cases


def test_a_constant_model_certifies_everything_at_the_clopper_pearson_radius_of_k_equal_n():
    """With k = n the bound is alpha^(1/n), so the radius is sigma * Phi^-1(alpha^(1/n)), growing with n."""
    x = torch.rand(3, 1, 4, 4)
    found = []
    for n in (100, 1000):
        cert = certify(Constant(), x, sigma=0.5, n0=10, n=n, alpha=0.001, batch_size=512, progress=False)
        expected = 0.5 * norm.ppf(0.001 ** (1 / n))
        assert cert.prediction.tolist() == [2, 2, 2] and cert.counts.tolist() == [n] * 3
        assert cert.radius.tolist() == pytest.approx([expected] * 3, rel=1e-5)
        found.append(expected)
    assert found[1] > found[0] > 0
    assert cert.accuracy(torch.tensor([2, 2, 0]), found[1]) == pytest.approx(2 / 3)
    assert cert.curve(torch.tensor([2, 2, 2]), [0, found[1], found[1] + 1e-3]) == [
        (0.0, 1.0), (found[1], 1.0), (found[1] + 1e-3, 0.0)]


def test_a_tie_under_noise_abstains_in_certify_and_predict():
    x = torch.full((4, 1, 4, 4), 0.5)
    cert = certify(CoinFlip(), x, sigma=0.25, n0=50, n=400, alpha=0.001, progress=False)
    assert cert.prediction.tolist() == [ABSTAIN] * 4 and cert.radius.tolist() == [0.0] * 4
    assert all(120 < k < 280 for k in cert.counts.tolist())
    assert predict_smoothed(CoinFlip(), x, 0.25, n=400, progress=False).tolist() == [ABSTAIN] * 4
    assert predict_smoothed(Constant(), x, 0.25, n=100, progress=False).tolist() == [2] * 4


def test_predict_abstains_exactly_when_the_binomial_test_says_so():
    """PREDICT's answer against Algorithm 2 on its own counts: a model certain of class 0 on bright images
    and coin-flipping near grey."""
    x = torch.cat([torch.full((3, 1, 4, 4), 0.5), torch.full((3, 1, 4, 4), 0.9)])
    for n in (30, 200):
        answers = predict_smoothed(CoinFlip(), x, 0.5, n=n, alpha=0.01, seed=5, progress=False).tolist()
        g = torch.Generator().manual_seed(5)
        noise = torch.randn((len(x) * n, 1, 4, 4), generator=g).view(len(x), n, 1, 4, 4)
        for i in range(len(x)):
            counts = torch.bincount(CoinFlip()(x[i] + 0.5 * noise[i]).argmax(1), minlength=2)
            (n_a, n_b), (c_a, _) = counts.topk(2)
            expected = ABSTAIN if binomtest(int(n_a), int(n_a + n_b), 0.5).pvalue > 0.01 else int(c_a)
            assert answers[i] == expected
    assert answers[3:] == [0, 0, 0]


def test_the_same_seed_gives_the_same_counts_and_another_seed_others():
    model, x = linear(), torch.rand(4, 1, 4, 4)
    first, again, other = (certify(model, x, sigma=1.0, n0=10, n=200, batch_size=64, seed=s, progress=False)
                           for s in (7, 7, 8))
    assert torch.equal(first.counts, again.counts) and torch.equal(first.radius, again.radius)
    assert not torch.equal(first.counts, other.counts)
    assert isinstance(first, Certificate) and first.prediction.dtype == torch.long


def test_the_model_is_left_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    model[1].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, 1, 4, 4)
    cert = certify(model, x, sigma=0.25, n0=5, n=20, batch_size=7, progress=False)
    predict_smoothed(model, x, 0.25, n=20, batch_size=7, progress=False)
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True, True, True]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    model.eval()  # counted in eval mode: dropout off, so the counts repeat in eval mode outside
    assert torch.equal(cert.counts, certify(model, x, sigma=0.25, n0=5, n=20, batch_size=7, progress=False).counts)


@pytest.mark.parametrize(("change", "message"), [
    ({"x": torch.full((2, 1, 4, 4), 1.5)}, "x must lie in"), ({"x": torch.rand(2, 4, 4)}, "x must be a batch"),
    ({"sigma": 0.0}, "sigma must be"), ({"sigma": -1.0}, "sigma must be"), ({"n0": 0}, "n0 must be"),
    ({"n": 0}, "n must be"), ({"alpha": 0.0}, "alpha must be"), ({"alpha": 1.0}, "alpha must be"),
    ({"batch_size": 0}, "batch_size must be")])
def test_bad_input_is_refused_naming_the_argument_before_any_work(change, message):
    calls = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    model.register_forward_hook(lambda *a: calls.append(1))
    args = {"x": torch.rand(2, 1, 4, 4), "sigma": 0.25, "n0": 5, "n": 10, "alpha": 0.01, "batch_size": 8, **change}
    with pytest.raises(ValueError, match=message):
        certify(model, progress=False, **args)
    if "n0" not in change:  # PREDICT has no selection draws
        args.pop("n0")
        with pytest.raises(ValueError, match=message):
            predict_smoothed(model, progress=False, **args)
    assert calls == []


def test_the_radius_formula_matches_the_normal_quantile():
    """sigma * Phi^-1(p) at a few bounds (the paper's Theorem 1 with pB = 1 - pA)."""
    cert = certify(Constant(), torch.rand(1, 1, 4, 4), sigma=1.0, n0=1, n=10, alpha=0.05, progress=False)
    assert float(cert.radius[0]) == pytest.approx(math.sqrt(2) * float(torch.special.erfinv(
        torch.tensor(2 * 0.05 ** 0.1 - 1, dtype=torch.float64))), rel=1e-5)

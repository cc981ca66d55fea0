"""``evaluate(..., smoothing=)``: the smoothed classifier's certified and empirical curves in the report, equal to
CERTIFY run directly, and the ``certified`` check, silent on a real evaluation and firing on doctored certificates."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from torch import nn

import advkit
from advkit.evaluation import certification
from advkit.evaluation.checks import check_certified
from advkit.evaluation.smoothed import SmoothedResult, SmoothingOptions
from advkit.rng import derived_seed
from advkit.smoothing import Certificate, certify

SETTINGS = dict(sigma=0.25, n0=10, n=100, predict_n=50, eot=2, batch_size=500)
RADII = [0, 0.25, 0.5]


def linear_task(n: int = 24):
    """A linear model on 4x4 images and the labels it predicts (clean accuracy 100%)."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.rand(n, 1, 4, 4, generator=g), torch.randn(16, 3, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.copy_(w.T)
        model[1].bias.zero_()
    return model, x, (x.flatten(1) @ w).argmax(1)


def smoothed(model, x, y, **settings):
    return advkit.evaluate(model, (x, y), ["pgd"], eps=RADII, norm="l2", checks=False, examples=0, progress=False,
                           smoothing={**SETTINGS, **settings})


def test_the_report_holds_both_curves_the_settings_and_a_passing_check(tmp_path):
    model, x, y = linear_task()
    report = smoothed(model, x, y)
    res = report["model"].smoothed
    cert = certify(model, x, n0=10, n=100, sigma=0.25, batch_size=500, seed=derived_seed(0, 0), progress=False)
    expected = cert.curve(y, RADII)  # one data batch: CERTIFY's own seed
    assert [r for r, _ in res.certified_curve()] == [r for r, _ in expected]
    assert [a for _, a in res.certified_curve()] == pytest.approx([a for _, a in expected])
    empirical = [a for _, a in res.empirical_curve()]
    assert empirical == sorted(empirical, reverse=True) and empirical[-1] < empirical[0]
    [check] = report.checks
    assert (check.name, check.status, check.model) == ("certified", "pass", "model")
    assert report.config["smoothing"] == {**asdict(SmoothingOptions(0.25)), **SETTINGS}
    report.save(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())["models"]["model"]["smoothing"]
    assert [p["radius"] for p in saved["curve"]] == RADII and saved["attacks"] == ["pgd"]
    assert [p["certified"] for p in saved["curve"]] == pytest.approx([a for _, a in cert.curve(y, RADII)])
    assert {"empirical", "empirical_ci95", "refuted", "certified_ci95"} <= set(saved["curve"][0])
    for name in ("report.md", "report.html"):
        assert "Randomized smoothing, sigma=0.25" in (tmp_path / "out" / name).read_text()
    assert (tmp_path / "out" / "curve.png").stat().st_size > 0


def test_without_smoothing_the_report_is_as_before():
    model, x, y = linear_task(8)
    report = advkit.evaluate(model, (x, y), ["fgsm"], eps=RADII, norm="l2", checks=False, examples=0, progress=False)
    assert report["model"].smoothed is None and "smoothing" not in report.config
    assert "smoothing" not in report.to_dict()["models"]["model"] and report.checks == []


@pytest.mark.parametrize(("norm", "smoothing", "error", "message"), [
    ("linf", 0.25, ValueError, "smoothing certifies L2 radii"), ("l2", 0.0, ValueError, "smoothing sigma"),
    ("l2", {"sigma": 0.25, "m": 3}, ValueError, "a dict needs sigma"), ("l2", "0.25", TypeError, "smoothing must be"),
    ("l2", {"sigma": 0.25, "alpha": 1.0}, ValueError, "smoothing alpha")])
def test_bad_smoothing_is_refused_before_any_work(norm, smoothing, error, message):
    model, x, y = linear_task(4)
    model.register_forward_hook(lambda *a: pytest.fail("the model ran"))
    with pytest.raises(error, match=message):
        advkit.evaluate(model, (x, y), ["fgsm"], eps=RADII, norm=norm, smoothing=smoothing, progress=False)


def test_the_check_fires_on_doctored_certificates(monkeypatch):
    """CERTIFY replaced by a liar: the base model's clean class, certified at radius 10, which the attacks
    refute at 0.5 on most samples."""
    def lying(model, x, *args, **kwargs):
        prediction = model(x).argmax(1)
        return Certificate(prediction, torch.full((len(x),), 10.0), torch.zeros_like(prediction), 0.25, 1, 1, 0.001)

    monkeypatch.setattr(certification, "certify", lying)
    model, x, y = linear_task()
    [check] = smoothed(model, x, y, sigma=0.05).checks
    assert check.status == "FAIL" and "PREDICT named another class" in check.message
    assert max(check.details["contradicted"]) >= check.details["slack"]


def test_the_checks_slack_is_the_binomial_tail_at_alpha():
    """p0 = alpha (1 + calls); the slack is the least k with P(Binomial(N, p0) >= k) <= alpha: one fewer
    contradiction passes."""
    from scipy.stats import binom

    n, calls, alpha = 400, 9, 0.001
    p0 = alpha * (1 + calls)
    slack = next(k for k in range(n) if binom.sf(k - 1, n, p0) <= alpha)

    def result(contradicted: int) -> SmoothedResult:
        certified = torch.ones(n, 2, dtype=torch.bool)
        refuted = torch.zeros(n, 2, dtype=torch.bool)
        refuted[:contradicted, 1] = True
        return SmoothedResult(SmoothingOptions(0.25, alpha=alpha), [0.0, 0.5], torch.ones(n), certified,
                              ~refuted, refuted, ["pgd"], calls)

    passed, failed = check_certified(result(slack - 1)), check_certified(result(slack))
    assert passed.passed and not failed.passed and failed.details["slack"] == slack
    assert failed.details["certified_minus_empirical"] == pytest.approx([0.0, slack / n])


def test_the_same_seed_gives_the_same_curves_and_the_callers_rng_is_left_alone():
    """The noisy model draws from torch's global RNG: evaluate seeds it per batch inside and restores the caller's."""
    model, x, y = linear_task(8)
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        runs.append(smoothed(model, x, y)["model"].smoothed)
        assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(runs[0].empirical, runs[1].empirical) and torch.equal(runs[0].refuted, runs[1].refuted)

"""Sanity checks flag models that mask gradients and leave a plain model alone."""
from __future__ import annotations

import torch
from torch import nn

import advkit
from advkit.attacks import PGD


class RoundInput(nn.Module):
    """Quantises the input to {0, 1} before the model: the gradient through round() is zero."""

    def forward(self, x):
        return torch.round(x)


class Saturate(nn.Module):
    """Scales the logits so far that the softmax saturates: cross-entropy gradients underflow to 0."""

    def forward(self, z):
        return z * 1e6


def by_model(report, name):
    return {c.name: c for c in report.checks if c.model == name}


def test_checks_flag_gradient_masking_and_pass_a_plain_model(trained_cnn, test_batch):
    """One evaluation of three models (one test, so xdist workers do not each repeat it)."""
    x, y = test_batch[0][:100], test_batch[1][:100]
    models = {"plain": trained_cnn, "rounded": nn.Sequential(RoundInput(), trained_cnn),
              "saturated": nn.Sequential(trained_cnn, Saturate())}
    report = advkit.evaluate(models, (x, y), attacks={"fgsm": "fgsm", "pgd": lambda m: PGD(m, steps=10)},
                             eps=[0, 0.1, 0.2, 0.3], probe=32, queries=200, progress=False, device="cpu", examples=0)
    plain = by_model(report, "plain")
    assert set(plain) == {"monotone", "large-eps", "more-budget", "gradient-free", "gradients"}
    assert all(c.passed and not c.skipped for c in plain.values()), {n: c.message for n, c in plain.items()}
    expected = {"rounded": {"gradients", "large-eps"},  # binarised MNIST is nearly robust to Square at 0.3 too
                "saturated": {"gradients", "large-eps", "gradient-free"}}
    for name, flags in expected.items():
        checks = by_model(report, name)
        failed = {n for n, c in checks.items() if not c.passed}
        assert flags <= failed, (name, {n: c.message for n, c in checks.items()})
        assert "masks" in checks["gradients"].message
    for check in report.checks:
        assert check.status in ("pass", "FAIL", "skip") and check.message
    counts = report.check_counts
    assert counts["passed"] + counts["failed"] + counts["skipped"] == len(report.checks) == 15
    assert counts["failed"] >= 4

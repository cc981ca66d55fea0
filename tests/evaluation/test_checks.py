"""Sanity checks flag models that mask gradients and leave a plain model alone."""
from __future__ import annotations

import pytest
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


@pytest.fixture(scope="module")
def report(trained_cnn, test_batch):
    x, y = test_batch[0][:100], test_batch[1][:100]
    models = {"plain": trained_cnn, "rounded": nn.Sequential(RoundInput(), trained_cnn),
              "saturated": nn.Sequential(trained_cnn, Saturate())}
    return advkit.evaluate(models, (x, y), attacks={"fgsm": "fgsm", "pgd": lambda m: PGD(m, steps=10)},
                           eps=[0, 0.1, 0.2, 0.3], probe=32, queries=200, progress=False, device="cpu", examples=0)


def by_model(report, name):
    return {c.name: c for c in report.checks if c.model == name}


def test_plain_model_passes_every_check(report):
    checks = by_model(report, "plain")
    assert set(checks) == {"monotone", "large-eps", "more-budget", "gradient-free", "gradients"}
    assert all(c.passed and not c.skipped for c in checks.values()), [(c.name, c.message) for c in checks.values()]


@pytest.mark.parametrize("name, flags", [
    ("rounded", {"gradients", "large-eps"}),  # binarised MNIST is nearly robust to Square at 0.3 too
    ("saturated", {"gradients", "large-eps", "gradient-free"}),
])
def test_gradient_masking_is_flagged(report, name, flags):
    checks = by_model(report, name)
    failed = {n for n, c in checks.items() if not c.passed}
    assert flags <= failed, {n: c.message for n, c in checks.items()}
    assert "masks" in checks["gradients"].message


def test_checks_carry_a_status_and_message(report):
    for check in report.checks:
        assert check.status in ("pass", "FAIL", "skip") and check.message
    counts = report.check_counts
    assert counts["passed"] + counts["failed"] + counts["skipped"] == len(report.checks) == 15

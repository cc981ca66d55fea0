"""MI-FGSM: breaks a standard model at eps=0.3, matches torchattacks' strength, and with no
momentum (decay=0) is exactly iterative FGSM from x."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from advkit.attacks import MIFGSM, PGD

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from stats import binomial_slack  # noqa: E402


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_breaks_a_standard_model_at_eps_03_at_least_as_well_as_torchattacks(trained_cnn, test_batch, torchattacks):
    """Both start from x (no randomness), but the model is trained on each machine, so the numbers
    move from CPU to CPU: ours may exceed theirs by two binomial standard deviations of the count."""
    x, y = test_batch[0][:200], test_batch[1][:200]
    ours = accuracy(trained_cnn, MIFGSM(trained_cnn, eps=0.3, steps=10)(x, y), y)
    theirs = accuracy(trained_cnn, torchattacks.MIFGSM(trained_cnn, eps=0.3, alpha=0.03, steps=10, decay=1.0)(x, y), y)
    assert ours < 0.05
    assert ours * len(x) <= theirs * len(x) + binomial_slack(theirs, len(x)), (ours, theirs)


def test_without_momentum_it_is_iterative_fgsm(trained_cnn, test_batch):
    x, y = test_batch[0][:50], test_batch[1][:50]
    mi = MIFGSM(trained_cnn, eps=0.1, steps=5, decay=0.0)(x, y)
    bim = PGD(trained_cnn, eps=0.1, steps=5, alpha=0.02, random_start=False)(x, y)
    assert torch.equal(mi, bim)


def test_l2_momentum_stays_in_the_ball_and_attacks(trained_cnn, test_batch):
    x, y = test_batch[0][:100], test_batch[1][:100]
    x_adv = MIFGSM(trained_cnn, eps=2.0, steps=10, norm="l2")(x, y)
    assert ((x_adv - x).flatten(1).norm(dim=1) <= 2.0 + 1e-5).all()
    assert accuracy(trained_cnn, x_adv, y) < 0.5

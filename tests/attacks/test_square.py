"""Square Attack: breaks a standard model at eps=0.3 within a small budget, never spends more
than its query budget per sample (and only on survivors), and is as strong as torchattacks'."""
from __future__ import annotations

import pytest
import torch

from advkit.attacks import Square
from advkit.attacks.square import fraction, window_side

torchattacks = pytest.importorskip("torchattacks")


def test_square_schedule_and_sides_follow_the_paper():
    assert fraction(0.8, 10, 10000) == 0.8 and fraction(0.8, 11, 10000) == 0.4
    assert fraction(0.8, 9000, 10000) == pytest.approx(0.8 / 512)
    assert fraction(0.8, 1, 100) == 0.2  # rescaled: iteration 1 of 100 is iteration 100 of 10,000
    assert window_side(0.8, 28, 28) == (25, 25) and window_side(1e-4, 28, 28) == (1, 1)
    assert window_side(0.9, 8, 8) == (7, 7)  # at most h - 1
    assert window_side(0.25, 1, 16) == (1, 4)  # flat inputs: a segment


def test_breaks_a_standard_model_at_eps_03_and_queries_only_survivors(trained_cnn, test_batch):
    x, y = test_batch[0][:100], test_batch[1][:100]
    res = Square(trained_cnn, eps=0.3, n_queries=300).run(x, y, check_success=False)
    assert res.success.float().mean() > 0.95
    assert ((res.x_adv - x).abs().flatten(1).amax(1) <= 0.3 + 1e-6).all()
    assert res.backwards == 0
    # one clean forward plus at most 300 queries each; fooled samples stop early, so far fewer
    assert res.forwards <= len(x) * 301 and res.forwards < len(x) * 60


def test_query_budget_is_exact_when_nobody_is_fooled(trained_cnn, test_batch):
    x, y = test_batch[0][:20], test_batch[1][:20]
    res = Square(trained_cnn, eps=1e-3, n_queries=25).run(x, y, check_success=False)  # no final re-check forward
    assert not res.success.any()
    assert res.forwards == len(x) * (1 + 25)  # the clean forward, then exactly the budget


def test_at_least_as_strong_as_torchattacks(trained_cnn, test_batch):
    x, y = test_batch[0][:100], test_batch[1][:100]
    ours = 1 - Square(trained_cnn, eps=0.2, n_queries=100).run(x, y).success.float().mean().item()
    x_ta = torchattacks.Square(trained_cnn, eps=0.2, n_queries=100, seed=0)(x, y)
    with torch.no_grad():
        theirs = (trained_cnn(x_ta).argmax(1) == y).float().mean().item()
    assert ours <= theirs

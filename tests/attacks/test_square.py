"""Square Attack: breaks a standard model within a small budget, never spends more than its query
budget per sample (and only on survivors), and is as strong as torchattacks', in L-inf and L2,
over several seeds within the measured spread; under L1 it stays in the ball and the box for images,
colour images and flat inputs, and fools a share of a standard model."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from advkit.attacks import Square
from advkit.attacks.square import bump, dipole, fraction, window_side

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from stats import binomial_bar, spread_slack  # noqa: E402


def test_square_schedule_and_sides_follow_the_paper():
    assert fraction(0.8, 10, 10000) == 0.8 and fraction(0.8, 11, 10000) == 0.4
    assert fraction(0.8, 9000, 10000) == pytest.approx(0.8 / 512)
    assert fraction(0.8, 1, 100) == 0.2  # rescaled: iteration 1 of 100 is iteration 100 of 10,000
    assert fraction(0.8, 11, 5000, rescale=False) == 0.4  # AutoAttack's: query by query
    assert fraction(0.8, 4001, 5000, rescale=False) == pytest.approx(0.8 / 128)
    assert window_side(0.8, 28, 28) == (25, 25) and window_side(1e-4, 28, 28) == (1, 1)
    assert window_side(0.9, 8, 8) == (7, 7)  # at most h - 1
    assert window_side(0.25, 1, 16) == (1, 4)  # flat inputs: a segment


def test_breaks_a_standard_model_at_eps_03_and_queries_only_survivors(trained_cnn, test_batch):
    x, y = test_batch[0][:100], test_batch[1][:100]
    res = Square(trained_cnn, eps=0.3, n_queries=300).run(x, y, check_success=False)
    assert res.success.float().mean() > 0.95  # measured 100/100 on seeds 0-2
    assert ((res.x_adv - x).abs().flatten(1).amax(1) <= 0.3 + 1e-6).all()
    assert res.backwards == 0
    # one clean forward plus at most 300 queries each; fooled samples stop early, so far fewer
    assert res.forwards <= len(x) * 301 and res.forwards < len(x) * 60


def test_l2_proposal_shapes_have_unit_norm_and_opposite_halves():
    b = bump(5, 5)
    assert float(b.norm()) == pytest.approx(1.0) and int(b.argmax()) == 12  # peak in the centre
    assert torch.equal(b, b.flip(0)) and torch.equal(b, b.T)
    for h, w, transpose in ((5, 5, False), (5, 5, True), (7, 7, False), (1, 6, False)):
        d = dipole(h, w, transpose)
        assert float(d.norm()) == pytest.approx(1.0)
        halves = (d[:, : w // 2], d[:, w // 2:]) if transpose or h == 1 else (d[: h // 2], d[h // 2:])
        assert bool((halves[0] > 0).all()) and bool((halves[1] < 0).all())


def test_l1_proposal_shapes_have_unit_mass_and_opposite_halves():
    b = bump(5, 5, l1=True)
    assert float(b.sum()) == pytest.approx(1.0) and int(b.argmax()) == 12
    assert float(b.max() / b.min()) > float(bump(5, 5).max() / bump(5, 5).min())  # sharper than L2's
    for h, w, transpose in ((5, 5, False), (5, 5, True), (1, 6, False)):
        d = dipole(h, w, transpose, l1=True)
        assert float(d.abs().sum()) == pytest.approx(1.0)
        halves = (d[:, : w // 2], d[:, w // 2:]) if transpose or h == 1 else (d[: h // 2], d[h // 2:])
        assert bool((halves[0] > 0).all()) and bool((halves[1] < 0).all())


@pytest.mark.parametrize("shape", [(3, 8, 8), (20,)])
def test_l1_stays_in_the_ball_and_the_box_on_colour_and_flat_inputs(shape):
    """Grey images are covered by test_l1.py; here three channels (each window's mass times C, which
    the projection trims) and flat inputs (windows are segments), pixels at 0 and 1 included."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, *shape, generator=g)
    x[:3] = x[:3].round()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 5)).eval()
    for eps in (0.5, 4.0):
        x_adv = Square(model, eps, n_queries=60, norm="l1", progress=False)(x, torch.arange(6) % 5)
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert bool(((x_adv - x).flatten(1).abs().sum(1) <= eps * (1 + 1e-6)).all())  # float rounding


def test_rescale_is_a_bool():
    with pytest.raises(TypeError, match=r"^rescale must be True or False, got 0$"):
        Square(torch.nn.Linear(4, 2), 1.0, rescale=0)


def test_l1_fools_a_share_of_a_standard_model(trained_cnn, test_batch):
    """L1 eps 15, 100 queries, 50 images: measured 5-10 fooled per seed over seeds 0-9 (mean 7.1,
    deviation 1.37); the bar is the sum over seeds 0-2 less three deviations of that sum (3 x 2.37)."""
    x, y = test_batch[0][:50], test_batch[1][:50]
    fooled = sum(int(Square(trained_cnn, eps=15.0, n_queries=100, norm="l1", seed=seed).run(x, y).success.sum())
                 for seed in SEEDS)
    assert fooled >= 3 * 7.1 - spread_slack(1.37, len(SEEDS)), fooled


def test_l2_breaks_a_standard_model_within_the_ball(trained_cnn, test_batch):
    x, y = test_batch[0][:100], test_batch[1][:100]
    res = Square(trained_cnn, eps=3.0, n_queries=500, norm="l2").run(x, y)
    assert res.success.float().mean() >= binomial_bar(0.87, len(x))  # measured 0.87-0.89 on seeds 0-2
    assert float((res.x_adv - x).flatten(1).norm(dim=1).max()) <= 3.0 + 1e-4
    assert 0 <= float(res.x_adv.min()) and float(res.x_adv.max()) <= 1


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_query_budget_is_exact_when_nobody_is_fooled(trained_cnn, test_batch, norm):
    x, y = test_batch[0][:20], test_batch[1][:20]
    res = Square(trained_cnn, eps=1e-3, n_queries=25, norm=norm).run(x, y, check_success=False)  # no re-check
    assert not res.success.any()
    assert res.forwards == len(x) * (1 + 25)  # the clean forward, then exactly the budget


SEEDS = (0, 1, 2)
#: The per-seed difference (ours - theirs) of the robust count of 100 images at 100 queries, measured
#: over seeds 0-9 (L-inf) and 0-29 (L2): its standard deviation. L-inf at eps 0.2: ours left 46-57,
#: theirs 52-67, a difference of mean -4.9 and deviation 4.91. L2 at eps 2.0: ours 78-84, theirs 76-83,
#: a difference of mean +1.93 and deviation 2.73: ours is the weaker by about 2 images in 100 there
#: (3.9 standard errors over 30 seeds), a gap three seeds cannot resolve.
MEASURED_SD = {"linf": 4.91, "l2": 2.73}


@pytest.mark.slow
@pytest.mark.parametrize("norm,eps", [("linf", 0.2), ("l2", 2.0)])
def test_at_least_as_strong_as_torchattacks(trained_cnn, test_batch, torchattacks, norm, eps):
    """Robust samples summed over seeds 0-2 of each: ours may exceed theirs by three standard deviations
    of that sum, from the measured spread (:data:`MEASURED_SD`; both are random searches)."""
    x, y = test_batch[0][:100], test_batch[1][:100]
    ours = theirs = 0
    for seed in SEEDS:
        ours += int((~Square(trained_cnn, eps=eps, n_queries=100, norm=norm, seed=seed).run(x, y).success).sum())
        ta_norm = "Linf" if norm == "linf" else "L2"
        ta = torchattacks.Square(trained_cnn, eps=eps, n_queries=100, seed=seed, norm=ta_norm)
        with torch.no_grad():
            theirs += int((trained_cnn(ta(x, y)).argmax(1) == y).sum())
    assert ours <= theirs + spread_slack(MEASURED_SD[norm], len(SEEDS)), (ours, theirs)

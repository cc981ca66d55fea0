"""APGD: the paper's checkpoint schedule and halving rule, and at least PGD's strength; APGD-T at
least APGD-DLR's."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from advkit.attacks import APGD, APGDT, PGD
from advkit.attacks.apgd import StepSizeSchedule, checkpoints

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from stats import spread_slack  # noqa: E402

#: The seeds every comparison of two random attacks sums over.
SEEDS = (0, 1, 2)


def robust_accuracy(atk, x, y) -> float:
    return 1 - atk.run(x, y).success.float().mean().item()


def robust(atk, x, y) -> int:
    """How many samples ``atk`` leaves standing."""
    return int((~atk.run(x, y).success).sum())


def test_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (then 1.05 is past the budget)
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(40) == [0, 9, 17, 23, 28, 32, 35, 38, 40]


def test_halves_and_restarts_from_the_best_point_only_where_progress_stalls():
    """Sample 0's loss rises at every step (no halving); sample 1's falls (Condition 1: halve, go
    back to its best point, which is its start, and step along the gradient stored there)."""
    eta = torch.ones(2)
    schedule = StepSizeSchedule(eta, steps=10)  # first checkpoint after 3 steps
    first_x, first_g = torch.tensor([[0.0], [5.0]]), torch.tensor([[1.0], [-1.0]])
    for i, losses in enumerate([(0.0, 3.0), (1.0, 2.0), (2.0, 1.0), (3.0, 0.0)]):
        x, g = (first_x, first_g) if i == 0 else (torch.tensor([[float(i)], [5.0 + i]]), torch.tensor([[7.0], [7.0]]))
        schedule.observe(None, torch.tensor(losses))
        g = schedule.before_step(x, g)
    assert eta.tolist() == [1.0, 0.5]
    assert x.tolist() == [[3.0], [5.0]] and g.tolist() == [[7.0], [-1.0]]


def test_stalled_best_loss_halves_even_when_steps_oscillate_upwards():
    """Condition 2: eta unchanged since the last checkpoint and no new best loss: halve."""
    eta = torch.ones(1)
    schedule = StepSizeSchedule(eta, steps=10)
    for loss in (5.0, 1.0, 2.0, 3.0):  # two of three steps rise (>= rho), but nothing beats 5
        schedule.observe(None, torch.tensor([loss]))
        schedule.before_step(torch.zeros(1, 1), torch.zeros(1, 1))
    assert eta.tolist() == [0.5]


@pytest.mark.slow  # APGD-40 and PGD-40 on 200 images, three seeds each
def test_apgd_ce_is_at_least_as_strong_as_pgd_at_equal_budget(trained_cnn, test_batch):
    """Samples left standing (of 200, eps 0.1, 40 steps each), summed over seeds 0-2. Measured over seeds
    0-9: APGD-CE leaves 115-117, PGD 116-118; their per-seed difference has mean -0.8 and standard
    deviation 0.92 samples, so APGD may exceed PGD by three deviations of the 3-seed sum (4.8 samples)."""
    x, y = test_batch[0][:200], test_batch[1][:200]
    apgd = sum(robust(APGD(trained_cnn, eps=0.1, steps=40, seed=s), x, y) for s in SEEDS)
    pgd = sum(robust(PGD(trained_cnn, eps=0.1, steps=40, seed=s), x, y) for s in SEEDS)
    assert apgd <= pgd + spread_slack(0.92, len(SEEDS)), (apgd, pgd)
    assert apgd < 0.75 * len(x) * len(SEEDS)  # and it does attack: clean accuracy is about 0.97


def test_dlr_and_l2_variants_attack(trained_cnn, test_batch):
    """L2 (eps 1.5, 20 steps, 100 images) summed over seeds 0-2. Measured over seeds 0-9: APGD leaves
    35-40, PGD 41-45; their per-seed difference has mean -5.7 and standard deviation 1.77 samples."""
    x, y = test_batch[0][:100], test_batch[1][:100]
    assert robust_accuracy(APGD(trained_cnn, eps=0.1, steps=20, loss="dlr"), x, y) < 0.75
    l2_apgd = sum(robust(APGD(trained_cnn, eps=1.5, steps=20, norm="l2", seed=s), x, y) for s in SEEDS)
    l2_pgd = sum(robust(PGD(trained_cnn, eps=1.5, steps=20, norm="l2", seed=s), x, y) for s in SEEDS)
    assert l2_apgd <= l2_pgd + spread_slack(1.77, len(SEEDS)), (l2_apgd, l2_pgd)
    assert l2_apgd < 0.6 * len(x) * len(SEEDS)


@pytest.mark.slow
def test_apgd_t_is_at_least_as_strong_as_apgd_dlr(trained_cnn, test_batch):
    """Robust samples of 100 (eps 0.1, 20 steps) summed over seeds 0-2. Measured over seeds 0-9: APGD-T
    (3 target classes) leaves 58-60, APGD-DLR 59-60; their per-seed difference has mean -0.3 and
    standard deviation 0.95 samples, so APGD-T may exceed APGD-DLR by three deviations of the 3-seed
    sum (4.9 samples)."""
    x, y = test_batch[0][:100], test_batch[1][:100]
    robust_t = robust_dlr = 0
    for seed in SEEDS:
        res = APGDT(trained_cnn, eps=0.1, steps=20, n_target_classes=3, seed=seed).run(x, y)
        with torch.no_grad():
            assert torch.equal(res.success, trained_cnn(res.x_adv).argmax(1) != y)  # success: any wrong class
        robust_t += int((~res.success).sum())
        robust_dlr += robust(APGD(trained_cnn, eps=0.1, steps=20, loss="dlr", seed=seed), x, y)
    assert robust_t <= robust_dlr + spread_slack(0.95, len(SEEDS)), (robust_t, robust_dlr)


def test_apgd_t_with_a_given_target_is_targeted_apgd_dlr(trained_cnn, test_batch):
    x, y = test_batch[0][:20], test_batch[1][:20]
    target = (y + 1) % 10
    ours = APGDT(trained_cnn, eps=0.2, steps=10).run(x, y, target)
    same = APGD(trained_cnn, eps=0.2, steps=10, loss="dlr").run(x, y, target)
    assert torch.equal(ours.x_adv, same.x_adv) and torch.equal(ours.success, same.success)

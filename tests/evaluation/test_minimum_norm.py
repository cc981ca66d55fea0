"""One run of a minimum-norm attack gives the whole accuracy-versus-eps curve: a sample is robust at
eps exactly when the smallest adversarial perturbation found for it is larger than eps."""
from __future__ import annotations

import math

import torch
from torch import nn

from advkit import evaluate
from advkit.attacks import CW, FAB, PGD, HopSkipJump


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return x, tiny_model()(x).argmax(1)


def test_one_unbounded_run_prices_the_whole_grid():
    """CW, HopSkipJump and FAB: the cost is paid once, at the first eps above 0; a misclassified sample is
    robust at no eps; the curve never rises."""
    model, (x, y) = tiny_model(), data()
    y[0] = (y[0] + 1) % 10
    attacks = {"hsj": HopSkipJump(model, queries=80, init_evals=10),
               "cw": CW(model, steps=5, binary_steps=1, progress=False),
               "fab": FAB(model, steps=5, n_target_classes=2, norm="l2")}
    report = evaluate(model, (x, y), attacks, eps=[0.0, 0.5, 1.0, 2.0], norm="l2", checks=False, progress=False,
                      examples=0)
    for name in attacks:
        robust = report["model"].robust(name)
        assert not robust[0].any() and (robust[:, 1:] <= robust[:, :-1]).all()
        costs = report["model"].attacks[name].costs
        assert costs[0].forwards == 0 and costs[1].forwards > 0 and all(c.forwards == 0 for c in costs[2:])
    assert report["model"].attacks["hsj"].costs[1].forwards <= 80 * 7


def test_the_curve_counts_a_sample_robust_exactly_above_its_smallest_perturbation():
    """The curve from evaluate against the definition applied to the very run evaluate made (same seeds)."""
    from advkit.evaluation.batched import attack_at
    from advkit.evaluation.options import EvaluationOptions

    model, (x, y) = tiny_model(), data()
    attack = HopSkipJump(model, queries=80, init_evals=10)
    options = EvaluationOptions(attacks=[attack], eps=[0.0, 0.5, 1.0, 2.0], norm="l2", checks=False, progress=False)
    todo = torch.arange(len(x))
    fooled, ends, _ = attack_at(attack, x, y, todo, math.inf, options.batches, torch.device("cpu"), options.seed, 1)
    dist = torch.where(fooled, (ends - x).flatten(1).norm(dim=1), torch.tensor(math.inf))
    report = evaluate(model, (x, y), {"hsj": attack}, eps=[0.0, 0.5, 1.0, 2.0], norm="l2", checks=False,
                      progress=False, examples=0)
    expected = torch.stack([dist > e for e in [0.0, 0.5, 1.0, 2.0]], 1)
    assert torch.equal(report["model"].robust("hsj"), expected)


def test_other_attacks_keep_the_per_eps_walk():
    assert not PGD.minimum_norm and HopSkipJump.minimum_norm and CW.minimum_norm and FAB.minimum_norm

"""HopSkipJump: top-1 answers only, an honest per-sample query budget, results in the ball and box,
the model unchanged. Tiny linear models; the comparison with ART lives in benchmarks/hsj.py."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advkit.attacks import HopSkipJump


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


class TopOneOnly(nn.Module):
    """The model's answer with every logit but the top-1 erased: a one-hot of its argmax."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(self.model(x).argmax(1), 10).float() * 5  # not a softmax either


class Counting(nn.Module):
    """Counts the rows it is asked about."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.model(x)


def images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_it_reads_nothing_but_the_top_one_answer(norm):
    """The same search on the model and on its one-hot top-1 answers: the logits beyond argmax change nothing."""
    model, x = tiny_model(), images()
    full = HopSkipJump(model, queries=150, norm=norm, init_evals=20).run(x)
    top = HopSkipJump(TopOneOnly(model), queries=150, norm=norm, init_evals=20).run(x, model(x).argmax(1))
    assert torch.equal(full.x_adv, top.x_adv) and torch.equal(full.success, top.success)
    assert full.success.all() and full.backwards == 0


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_every_model_call_counts_and_stays_within_the_budget(norm):
    counted, x = Counting(tiny_model()), images()
    res = HopSkipJump(counted, queries=120, norm=norm, init_evals=20).run(x)
    assert res.forwards == counted.rows <= 120 * len(x)
    assert res.forwards > 100 * len(x)  # the budget is spent, not left unused


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_results_lie_in_the_ball_and_box_and_the_model_is_unchanged(norm):
    model, x = tiny_model(), images()
    before = [p.clone() for p in model.parameters()]
    unbounded = HopSkipJump(model, queries=150, norm=norm, init_evals=20).run(x)
    found = unbounded.x_adv - x
    dist = found.flatten(1).norm(dim=1) if norm == "l2" else found.flatten(1).abs().amax(1)
    assert unbounded.success.all() and (model(unbounded.x_adv).argmax(1) != model(x).argmax(1)).all()
    eps = float(dist.median())
    bounded = HopSkipJump(model, eps, queries=150, norm=norm, init_evals=20).run(x)
    delta = bounded.x_adv - x
    size = delta.flatten(1).norm(dim=1) if norm == "l2" else delta.flatten(1).abs().amax(1)
    assert (size <= eps + 1e-6).all() and bounded.x_adv.min() >= 0 and bounded.x_adv.max() <= 1
    assert torch.equal(bounded.success, dist <= eps)  # fooled at eps exactly when its smallest found fits
    assert bounded.forwards <= 150 * len(x)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_bad_settings_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match=r"^queries must be a finite integer >= 2, got 1$"):
        HopSkipJump(tiny_model(), queries=1)
    with pytest.raises(ValueError, match=r"^norm must be one of 'l2', 'linf'; got 'l1'$"):
        HopSkipJump(tiny_model(), norm="l1")
    with pytest.raises(ValueError, match=r"^targeted='least-likely': HopSkipJump does not support this target "
                                         r"choice \(supported: given, random\)$"):
        HopSkipJump(tiny_model(), targeted="least-likely")
    assert HopSkipJump(tiny_model()).eps == math.inf

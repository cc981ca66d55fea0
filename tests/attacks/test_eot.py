"""Expectation over transformation (``eot``) in the gradient attacks: eot=1 is today's attack, eot=k
costs k forwards and k backwards per sample and step, a deterministic model gets the same search, and
attacks whose gradients do not come from AttackRun's objective refuse eot > 1."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from advkit.attacks import APGD, APGDT, ATTACKS, CW, FAB, PGD, Square
from advkit.defenses import GaussianNoise


def net() -> nn.Module:
    torch.default_generator.manual_seed(0)  # the CPU generator alone: see test_guarantees.tiny_model
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def Noisy(sigma: float = 0.3) -> nn.Module:  # noqa: N802 (a model, named as one)
    """:func:`net` behind Gaussian noise on the input in every forward (eval mode included)."""
    return nn.Sequential(GaussianNoise(sigma), net())


class Counting(nn.Module):
    """``inner``, recording each forward call as (rows, whether it builds a graph to the input)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append((len(x), torch.is_grad_enabled() and x.requires_grad))
        return self.inner(x)


#: The attacks that take their gradients their own way (not through AttackRun.objective), each built with
#: ``make(model, eps, eot)`` on a small budget, and the gradient steps that budget takes while no sample is fooled.
OWN_WAY = {
    "apgd-t": (lambda model, eps, eot: APGDT(model, eps, steps=4, n_target_classes=2, eot=eot), 4 * 2),
    "fab-t": (lambda model, eps, eot: FAB(model, eps, steps=4, n_target_classes=2, eot=eot), 4 * 2),
    "cw": (lambda model, eps, eot: CW(model, eps, steps=4, binary_steps=2, progress=False, eot=eot), 4 * 2),
}


def batch(n: int = 16):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 10


#: Smaller budgets for the registry's costlier attacks (their defaults spend 500-900 gradient steps).
SMALL = {"apgd-t": {"steps": 10}, "fab-t": {"steps": 10}, "cw": {"steps": 10, "binary_steps": 2}}


@pytest.mark.parametrize("name", sorted(n for n, cls in ATTACKS.items() if cls.supports_eot))
def test_eot_1_is_the_single_draw_attack(name):
    x, y, small = *batch(), SMALL.get(name, {})
    plain, one = ATTACKS[name](net(), 0.1, **small).run(x, y), ATTACKS[name](net(), 0.1, eot=1, **small).run(x, y)
    assert torch.equal(plain.x_adv, one.x_adv) and torch.equal(plain.success, one.success)
    assert (plain.forwards, plain.backwards) == (one.forwards, one.backwards)


@pytest.mark.parametrize("make", [lambda m, eot: PGD(m, 0.1, steps=5, eot=eot),
                                  lambda m, eot: APGD(m, 0.1, steps=5, eot=eot),
                                  *(lambda m, eot, make=make: make(m, 0.1, eot) for make, _ in OWN_WAY.values())],
                         ids=["pgd", "apgd", *OWN_WAY])
def test_eot_on_a_deterministic_model_is_the_same_search(make):
    """Two equal draws average to the same gradient exactly: the same iterates and verdicts, twice the passes."""
    x, y = batch()
    one, two = make(net(), 1).run(x, y), make(net(), 2).run(x, y)
    assert torch.equal(one.x_adv, two.x_adv) and torch.equal(one.success, two.success)
    assert two.backwards == 2 * one.backwards


@pytest.mark.parametrize("k", [1, 3])
def test_eot_k_costs_k_passes_per_step(k):
    """PGD without early stopping, ``steps`` steps on n samples: one clean forward, k forwards and k
    backwards per sample and step, and with k > 1 one fresh forward per sample that judges the result
    (with 1, only the rows no forward judged)."""
    x, y = batch()
    n, steps = len(x), 4
    res = PGD(Noisy(), 0.1, steps=steps, early_stop=False, eot=k).run(x, y)
    assert res.backwards == steps * k * n
    judged = res.forwards - n - steps * k * n  # the result's judge: all n rows with k > 1, the unsettled ones with 1
    assert judged == n if k > 1 else 0 <= judged <= n


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", sorted(OWN_WAY))
def test_eot_k_forwards_per_gradient_and_a_fresh_judge_in_the_attacks_with_their_own_gradients(name, k):
    """On a noise-injected model at an eps too small to fool anyone, every gradient step of APGD-T, FAB-T
    and CW costs k forwards that build a graph (and k backwards), and with k > 1 the last forward is one
    fresh no-grad forward of every row, the judge of the returned batch."""
    make, steps = OWN_WAY[name]
    model, (x, y) = Counting(Noisy()), batch()
    res = make(model, 1e-3 if name != "cw" else None, k).run(x, y)
    graphs = [rows for rows, graph in model.calls if graph]
    assert len(graphs) == k * steps and res.backwards == sum(graphs)
    if k > 1:
        assert model.calls[-1] == (len(x), False)


def test_eot_stays_in_the_ball_and_box_and_leaves_the_model_unchanged():
    model, (x, y) = Noisy().train(), batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        res = APGD(model, eps, steps=5, norm=norm, eot=4).run(x, y)
        dist = (res.x_adv - x).flatten(1)
        size = dist.abs().amax(1) if norm == "linf" else dist.norm(dim=1)
        assert float(size.max()) <= eps + 1e-6 and 0 <= float(res.x_adv.min()) and float(res.x_adv.max()) <= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training


def test_eot_needs_an_attack_that_supports_it():
    supported = ", ".join(sorted(cls.__name__ for cls in ATTACKS.values() if cls.supports_eot))
    assert {"APGDT", "CW", "FAB"} <= set(supported.split(", "))
    with pytest.raises(ValueError) as error:
        Square(net(), 0.1, eot=2)
    assert str(error.value) == (f"eot=2: Square does not average its gradients over draws (supports_eot is False); "
                                f"use one that does ({supported}) with eot, or AutoAttack(version='rand')")
    with pytest.raises(ValueError, match=r"^eot must be a finite integer >= 1, got 0$"):
        PGD(net(), 0.1, eot=0)
    assert "eot=5" in repr(PGD(net(), 0.1, eot=5)) and "eot" not in repr(PGD(net(), 0.1))

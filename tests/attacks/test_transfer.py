"""Transfer attacks craft on a surrogate and only query the target: no backward through the target, two
forwards per sample, success judged on the target, the surrogate named in the report."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import PGD, Square, Transfer
from advkit.attacks.capabilities import capability, gradient_free


def linear(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def surrogate_of(target: nn.Module, seed: int = 1) -> nn.Module:
    """A surrogate near the target (its weights plus noise), so that some examples transfer and some do not."""
    surrogate = copy.deepcopy(target)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in surrogate.parameters():
            p.add_(torch.randn(p.shape, generator=g) * p.std())
    return surrogate


def images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


class Counting(nn.Module):
    """The target, counting its forward calls, the rows they carry, and the gradients sent back through it."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls, self.rows, self.backwards = inner, 0, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        self.calls, self.rows = self.calls + 1, self.rows + len(x)
        if out.requires_grad:
            out.register_hook(lambda g: setattr(self, "backwards", self.backwards + 1))
        return out


def test_a_transfer_attack_never_calls_the_targets_backward_and_judges_on_the_target():
    target = Counting(linear(0))
    surrogate = surrogate_of(target.inner)
    x = images()
    y = target.inner(x).argmax(1)  # every sample correctly classified: each one is attacked
    attack = Transfer(target, PGD(surrogate, eps=0.3, steps=5))
    result = attack.run(x, y)
    assert target.backwards == 0 and result.backwards == 0
    assert target.rows == result.forwards == 2 * len(x)  # the clean forward and the one that judges
    with torch.no_grad():
        assert torch.equal(result.success, target.inner(result.x_adv).argmax(1) != y)
    assert (result.x_adv - x).abs().max() <= 0.3 + 1e-6 and 0 <= result.x_adv.min() and result.x_adv.max() <= 1
    assert 0 < int(result.success.sum()) < len(x)  # some examples transfer, some do not


def test_the_surrogates_examples_are_what_the_target_gets_with_per_sample_seeds():
    target = linear(0)
    surrogate = surrogate_of(target)
    x = images()
    y = target(x).argmax(1)
    seeds = torch.arange(len(x)) + 7
    result = Transfer(target, PGD(surrogate, eps=0.2, steps=3)).run(x, y, seed=seeds)
    assert torch.equal(result.x_adv, PGD(surrogate, eps=0.2, steps=3).run(x, y, seed=seeds).x_adv)
    parts = [Transfer(target, PGD(surrogate, eps=0.2, steps=3)).run(x[r], y[r], seed=seeds[r]) for r in
             (slice(0, 5), slice(5, None))]
    assert torch.equal(result.x_adv, torch.cat([p.x_adv for p in parts]))


def test_its_capabilities_say_it_uses_no_gradient_of_the_target():
    target = linear(0)
    surrogate = surrogate_of(target)
    attack = Transfer(target, PGD(surrogate, eps=0.2, norm="l2"))
    assert gradient_free(attack) and attack.norm == "l2" and attack.eps == 0.2
    assert capability(attack, "per_sample") and capability(attack, "warm_starts")
    square = Transfer(target, Square(surrogate, eps=0.2, n_queries=5, progress=False), eps=0.1)
    assert not capability(square, "per_sample") and not capability(square, "warm_starts") and square.eps == 0.1
    assert "surrogate='Sequential'" in repr(attack) and "attack=PGD(eps=0.2" in repr(attack)


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda t, s: Transfer(t, PGD(t)), ValueError, "attack is bound to the target model itself"),
    (lambda t, s: Transfer(t, s), TypeError, "attack must be an attack object bound to the surrogate model, got "
                                             "Sequential"),
    (lambda t, s: Transfer(t, PGD(s), norm="l2"), TypeError, "Transfer takes no norm="),
    (lambda t, s: Transfer(t, PGD(s), surrogate=3), TypeError, "surrogate must be a name"),
])
def test_bad_settings_are_refused_naming_the_argument(make, error, message):
    with pytest.raises(error, match=message):
        make(linear(0), linear(1))


def test_evaluate_runs_a_transfer_attack_and_the_report_names_the_surrogate():
    target = linear(0)
    surrogate = surrogate_of(target)
    x = images(24)
    y = target(x).argmax(1)
    attack = Transfer(target, PGD(surrogate, steps=3), surrogate="resnet-sur")
    report = advkit.evaluate(target, (x, y), {"transfer": attack}, eps=[0.0, 0.1, 0.3], checks=False,
                             progress=False, examples=0)
    description = report["model"].attacks["transfer"].description
    assert "surrogate='resnet-sur'" in description and "PGD" in description
    assert "resnet-sur" in report.markdown()
    accuracy = report["model"].accuracy("transfer")
    assert accuracy[0] == 1.0 and accuracy[-1] < 1.0

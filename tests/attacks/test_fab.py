"""FAB's minimum-norm mode (``eps=None``): each sample's closest adversarial iterate, honestly judged,
and one such run gives the accuracy at every eps that fixed-eps FAB gives. A tiny MLP, so that
FAB's linearisation is not exact; the comparison with the authors' code is AutoAttack's (FAB-T)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advkit.attacks import FAB
from advkit.core import get_norm

#: Budgets spread over the smallest perturbations found on ``batch()`` (measured: 28-1, 30-1 and 26-1
#: of the 32 samples robust from the smallest eps to the largest).
GRIDS = {"linf": [0.02, 0.05, 0.1, 0.2], "l2": [0.1, 0.25, 0.5, 1.0], "l1": [0.5, 1.0, 2.0, 4.0]}


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def batch(model: nn.Module, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return x, model(x).argmax(1)


def smallest(res, x: torch.Tensor, norm: str) -> torch.Tensor:
    """The norm of each returned perturbation, inf where the sample was not fooled."""
    return torch.where(res.success, get_norm(norm).distance(res.x_adv - x), torch.tensor(math.inf))


@pytest.mark.parametrize("norm", list(GRIDS))
def test_unbounded_fab_returns_adversarial_points_in_the_box(norm):
    """Every sample it reports fooled is fooled by the returned point itself (judged on a fresh
    forward), which lies in [0, 1]; a sample the model already gets wrong is returned as x."""
    model = mlp()
    x, y = batch(model)
    y[0] = (y[0] + 1) % 10
    res = FAB(model, eps=None, steps=10, n_target_classes=2, norm=norm).run(x, y)
    with torch.no_grad():
        fooled = model(res.x_adv).argmax(1) != y
    assert torch.equal(fooled, res.success) and bool(res.success.all())
    assert torch.equal(res.x_adv[0], x[0]) and bool((smallest(res, x, norm)[1:] > 0).all())
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_eps_none_and_run_at_eps_inf_are_the_same_search():
    model = mlp()
    x, y = batch(model, 8)
    a = FAB(model, eps=None, steps=5, n_target_classes=2).run(x, y)
    b = FAB(model, steps=5, n_target_classes=2).run(x, y, eps=math.inf)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert math.isinf(FAB(model, eps=None).eps)


@pytest.mark.parametrize("norm", list(GRIDS))
def test_one_unbounded_run_gives_fixed_eps_fabs_accuracy_at_every_eps(norm):
    """A sample is robust on the curve (its smallest perturbation exceeds eps) exactly when fixed-eps
    FAB, run at that eps with the same settings, fails on it. Measured: the same samples at every eps
    of GRIDS in every norm (also with 20 steps and 3 targets; and benchmarks/fab_curve.py: the same
    samples at all 14 budgets over the three norms, 100 mnist5k images on the standard SmallCNN); one
    sample of slack per eps for a float tie on the boundary, and the curve is never the weaker."""
    model = mlp()
    x, y = batch(model)
    dist = smallest(FAB(model, eps=None, steps=10, n_target_classes=2, norm=norm).run(x, y), x, norm)
    for eps in GRIDS[norm]:
        fixed = ~FAB(model, eps=eps, steps=10, n_target_classes=2, norm=norm).run(x, y).success
        curve = dist > eps
        assert int((curve != fixed).sum()) <= 1 and int(curve.sum()) <= int(fixed.sum()), (eps, curve, fixed)


def test_eps_none_is_for_minimum_norm_attacks_only():
    """The base class reads ``eps=None`` as unbounded for the attacks that declare ``minimum_norm``."""
    from advkit.attacks import CW, PGD, HopSkipJump

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    assert FAB(model, eps=None).eps == CW(model).eps == HopSkipJump(model).eps == math.inf
    with pytest.raises(TypeError, match="^eps must be a number: PGD is not a minimum-norm attack$"):
        PGD(model, eps=None)

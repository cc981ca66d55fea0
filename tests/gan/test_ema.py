"""The generator's EMA as its own object: a frozen copy, its state, and its checks."""
import pytest
import torch
from torch import nn

from advkit.gan.ema import EMA


def live_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))


def test_the_average_is_a_frozen_copy_that_moves_only_on_update():
    live = live_model().train()
    ema = EMA(live, decay=0.5, ramp=10.0)  # ramp 10: decay 0.5 from the first step on
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    start = ema.model[0].weight.clone()
    with torch.no_grad():
        live[0].weight.add_(2.0)
    assert torch.equal(ema.model[0].weight, start)  # a copy, not the live weights
    ema.update(live, step=0)
    assert torch.allclose(ema.model[0].weight, start + 1.0)
    assert live[0].weight.requires_grad  # the live model is left as it was


def test_a_restored_average_continues_exactly():
    live = live_model()
    straight, first = EMA(live, 0.9, 0.5), EMA(live, 0.9, 0.5)
    for step in range(6):
        with torch.no_grad():
            live[0].weight.mul_(1.1)
            live[1].running_mean.add_(0.3)
        straight.update(live, step)
        if step == 2:
            fresh = EMA(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)), 0.9, 0.5)
            first.update(live, step)
            fresh.load_state_dict(first.state_dict())
        elif step > 2:
            fresh.update(live, step)
        else:
            first.update(live, step)
    pairs = zip(straight.state_dict().values(), fresh.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("option,value", [("decay", 1.0), ("decay", 0.0), ("decay", float("nan")), ("ramp", 0.0)])
def test_bad_settings_are_refused_by_name(option, value):
    with pytest.raises(ValueError, match=f"{option} must be a finite number"):
        EMA(live_model(), **{"decay": 0.9, "ramp": 0.2, option: value})

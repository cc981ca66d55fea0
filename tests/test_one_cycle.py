"""The one-cycle schedule: one module (advkit.train) for fit's and adversarial training's, and fit runs
on any number of steps (4 steps once divided by zero inside torch's OneCycleLR)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

import advkit
from advkit.defenses import training
from advkit.train import one_cycle, one_cycle_scheduler


def rates(total: int, make) -> list[tuple[float, float]]:
    """(lr, beta1) of each of ``total`` steps of the scheduler ``make(optimizer)`` builds."""
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make(opt)
    seen = []
    for _ in range(total):
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
        opt.step()
        sched.step()
    return seen


@pytest.mark.parametrize("total", [1, 2, 3, 5, 8, 12, 39, 40, 157])
def test_fit_schedule_is_torch_one_cycle_exactly(total):
    ours = rates(total, lambda opt: one_cycle_scheduler(opt, 3e-3, total))
    torchs = rates(total, lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=total,
                                                                          pct_start=0.25))
    assert ours == torchs


def test_four_steps_warm_up_to_step_one_then_anneal():
    with pytest.raises(ZeroDivisionError):  # torch's own, at 4 steps: why the schedule handles them
        torch.optim.lr_scheduler.OneCycleLR(torch.optim.AdamW([torch.zeros(1)], lr=1.0), 1.0, total_steps=4,
                                            pct_start=0.25)
    lrs = [lr for lr, _ in rates(4, lambda opt: one_cycle_scheduler(opt, 1.0, 4))]
    assert lrs[0] == pytest.approx(1 / 25) and lrs[1] == pytest.approx(1.0)
    assert lrs[1] > lrs[2] > lrs[3] and lrs[3] == pytest.approx(1 / 25 / 1e4)


def test_fit_on_four_batches():
    x, y = advkit.data.as_tensors(advkit.data.load("digits")[0])
    model = advkit.models.SmallCNN(input_size=8, width=4, hidden=16)
    losses = advkit.train.fit(model, TensorDataset(x[:512], y[:512]), epochs=1, batch_size=128, seed=0,
                              device="cpu", progress=False)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)


def test_adversarial_training_reads_the_one_schedule():
    assert training.one_cycle is one_cycle
    assert one_cycle(0, 100, 1.0) == pytest.approx(1 / 25)
    assert one_cycle(25, 100, 1.0) == 1.0
    assert one_cycle(99, 100, 1.0) == pytest.approx(0.0, abs=1e-3) and one_cycle(99, 100, 1.0) > 0

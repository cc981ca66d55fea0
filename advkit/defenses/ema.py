"""An exponential moving average of a network's weights, updated after every optimizer step."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..core import Hook, check_number


def check_ema(value: float, name: str = "ema") -> float:
    """``value`` as the decay of a weight average, in [0, 1) (0: no average); else a ValueError/TypeError
    that names ``name``."""
    return check_number(value, name, low_open=False, high=1.0, high_open=True)


def ema_decay(decay: float, t: int) -> float:
    """The decay of update ``t`` (0 for the first): ``min(decay, (1 + t) / (10 + t))``, so that the first
    updates follow the network closely instead of averaging in its initial weights."""
    return min(decay, (1 + t) / (10 + t))


class WeightAverage:
    """A copy of ``model`` whose parameters follow ``model``'s as ``avg = d * avg + (1 - d) * w`` with
    ``d = ema_decay(decay, t)`` at update ``t``. Its buffers (BatchNorm's running statistics, already
    running averages) are copied from ``model`` at each update, not averaged again."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, t: int) -> None:
        """Average in ``model``'s current weights as update ``t``."""
        d = ema_decay(self.decay, t)
        for avg, w in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.mul_(d).add_(w.detach(), alpha=1 - d)
        for avg, b in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(b)


class Averaging(Hook):
    """A game hook that averages ``model``'s weights into ``average`` after every move of the network (the
    outer player's optimizer step), as update ``r`` of round ``r``."""

    def __init__(self, model: nn.Module, average: WeightAverage):
        self.model, self.average = model, average

    def outer_step(self, r: int, loss: torch.Tensor) -> None:
        self.average.update(self.model, r)


__all__ = ["Averaging", "WeightAverage", "check_ema", "ema_decay"]

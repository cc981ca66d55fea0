"""An exponential moving average of a generator's weights, with a decay that ramps up with the steps."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..core import check_number


def ema_decay_at(step: int, decay: float, ramp: float) -> float:
    """The EMA decay after the generator step ``step`` (0-based): ``min(decay, 1 - 1/(ramp * (step + 1)))``,
    at least 0 (the first steps copy the generator).

    Args:
        step: the generator step.
        decay: the largest decay, in (0, 1).
        ramp: the share of the steps done that the average covers.
    """
    return max(0.0, min(decay, 1.0 - 1.0 / (ramp * (step + 1))))


class EMA:
    """The moving average of ``model``: a frozen copy (``self.model``, in eval mode, without gradients)
    that :meth:`update` moves towards the live model.

    The decay after step t is :func:`ema_decay_at` ``(t, decay, ramp)``: the average covers about the
    last ``ramp`` share of the steps done, never more than ``1 / (1 - decay)`` steps, so a short run
    is not averaged with its untrained start. ``state_dict``/``load_state_dict`` are the copy's.

    Args:
        model: the live model to average.
        decay: the largest decay, in (0, 1).
        ramp: the share of the steps done that the average covers (> 0).
    """

    def __init__(self, model: nn.Module, decay: float, ramp: float):
        self.decay = check_number(decay, "decay", high=1.0, high_open=True)
        self.ramp = check_number(ramp, "ramp")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model`` (the live one it copies) with the decay of ``step``.

        Args:
            model: the live model.
            step: the generator step just taken.
        """
        decay = ema_decay_at(step, self.decay, self.ramp)
        for avg, live in zip(self.model.parameters(), model.parameters(), strict=False):
            avg.lerp_(live, 1 - decay)
        for avg, live in zip(self.model.buffers(), model.buffers(), strict=False):
            # BatchNorm statistics are averaged like the weights they normalise (copying the live
            # ones would pair averaged weights with the statistics of other weights); counters are copied
            if avg.is_floating_point():
                avg.lerp_(live, 1 - decay)
            else:
                avg.copy_(live)

    def state_dict(self) -> dict[str, Any]:
        """The averaged model's state dict."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load an averaged model's state dict."""
        self.model.load_state_dict(state)


__all__ = ["EMA", "ema_decay_at"]

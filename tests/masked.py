"""Models that mask their gradients, shared by the attack and the evaluation tests: each wraps a
working network and returns its logits (or its one-hot argmax) with no gradient to the input."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NoGrad(nn.Module):
    """``torch.no_grad()`` inside forward."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        with torch.no_grad():
            return self.net(x)


class Detach(NoGrad):
    """The input detached before the network."""

    def forward(self, x):
        return self.net(x.detach())


class OneHot(NoGrad):
    """The argmax as one-hot logits (scaled so they do not look like probabilities): the right
    class, piecewise constant, no gradient at all."""

    def forward(self, x):
        logits = self.net(x)
        return F.one_hot(logits.argmax(1), logits.shape[1]).float() * 10


MASKED = {"no_grad": NoGrad, "detach": Detach, "argmax-one-hot": OneHot}

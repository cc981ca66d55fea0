"""The momentum step rule of MI-FGSM, moving along a norm's steepest-ascent direction."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .constraints import Bound, flat_norm
from .norms import Norm, get_norm
from .numbers import check_number
from .steps import step_size


class MomentumStep:
    """MI-FGSM (Dong et al. 2018): ``m = decay*m + g/||g||_1``, then the steepest-ascent step of
    ``norm`` (a name or a :class:`Norm`: a sign step under L-inf, a normalised one under L2) along ``m``."""

    def __init__(self, alpha: Bound, decay: float = 1.0, norm: str | Norm = "linf"):
        self.alpha, self.decay = step_size(alpha), check_number(decay, "decay", low_open=False)
        self.direction = get_norm(norm).step(alpha)
        self.momentum: list[Tensor] | None = None

    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor], ascend: bool) -> None:
        normed = [g / flat_norm(g, p=1).clamp_min(1e-12) for g in grads]
        if self.momentum is None:
            self.momentum = normed
        else:
            self.momentum = [m.mul_(self.decay).add_(g) for m, g in zip(self.momentum, normed, strict=True)]
        self.direction(params, self.momentum, ascend)

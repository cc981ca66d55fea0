"""Per-sample attack objectives (to maximise) and the success criterion.

``targeted=False``: ``labels`` are the true classes and the attack pushes away from them.
``targeted=True``: ``labels`` are the target classes and the attack pulls toward them.
"""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

Loss = Callable[[Tensor, Tensor, bool], Tensor]


def ce(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Cross-entropy of the true class (untargeted), or minus that of the target (targeted)."""
    loss = F.cross_entropy(logits, labels, reduction="none")
    return -loss if targeted else loss


def _top_other(logits: Tensor, labels: Tensor) -> Tensor:
    """The largest logit among the classes other than ``labels``."""
    return logits.scatter(1, labels[:, None], float("-inf")).amax(1)


def margin(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Carlini-Wagner margin: ``max_{j!=y} z_j - z_y``, or ``z_t - max_{j!=t} z_j`` when targeted.

    Positive exactly when the attack has succeeded."""
    chosen = logits.gather(1, labels[:, None]).squeeze(1)
    other = _top_other(logits, labels)
    return chosen - other if targeted else other - chosen


def dlr(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020): the margin divided by the spread of the top
    logits, so it is invariant to rescaling the logits (the targeted form uses the target).
    Needs at least 3 classes (a ValueError otherwise)."""
    if logits.shape[1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes, got logits of shape {tuple(logits.shape)}; "
                         "use the 'ce' or 'margin' loss")
    return margin(logits, labels, targeted) / dlr_scale(logits, targeted)


def dlr_scale(logits: Tensor, targeted: bool) -> Tensor:
    """The DLR loss's denominator: ``z_pi1 - z_pi3`` (targeted: ``z_pi1 - (z_pi3 + z_pi4) / 2``, or
    ``z_pi1 - z_pi3`` of three classes), kept above 1e-12."""
    top = logits.sort(1, descending=True).values
    if targeted and logits.shape[1] >= 4:
        scale = top[:, 0] - (top[:, 2] + top[:, 3]) / 2
    elif targeted:  # 3 classes: no fourth logit, the spread of all three instead
        scale = top[:, 0] - top[:, -1]
    else:
        scale = top[:, 0] - top[:, 2]
    return scale.clamp_min(1e-12)


#: The attack objectives by name: what ``loss=`` of an attack names (each attack accepts those in its ``losses``).
ATTACK_LOSSES: dict[str, Loss] = {"ce": ce, "margin": margin, "dlr": dlr}


def sample_loss(name: str) -> Loss:
    """The per-sample attack loss called ``name`` (a key of :data:`ATTACK_LOSSES`); any other name is a ValueError.

    Args:
        name: ``"ce"``, ``"margin"`` or ``"dlr"``.

    Returns:
        ``loss(logits, labels, targeted)``: one value per sample, higher for a stronger attack.
    """
    if name not in ATTACK_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, ATTACK_LOSSES))}; got {name!r}")
    return ATTACK_LOSSES[name]


def succeeded(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Per-sample success: predicted class is the target (targeted) or not the true class.

    Args:
        logits: the model's outputs (N, classes).
        labels: the true classes, or the targets when ``targeted``.
        targeted: whether ``labels`` are targets.
    """
    pred = logits.argmax(1)
    return pred == labels if targeted else pred != labels

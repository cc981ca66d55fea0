"""Errors an attack raises when the model, not the caller, makes the attack meaningless."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class GradientMaskingError(RuntimeError):
    """The model's output carries no gradient with respect to its input (``torch.no_grad`` or
    ``detach`` inside ``forward``, argmax one-hot outputs): gradient attacks cannot run on it and
    would report nothing or nonsense. Evaluate it with gradient-free attacks ("square") instead."""


def check_input_gradient(x: Tensor, out, model: nn.Module, attack: object) -> None:
    """Raise :class:`GradientMaskingError` when ``x`` needs a gradient (grad mode on) and the model's
    output ``out`` (for input ``x``) carries none. Every gradient forward of an attack passes here."""
    if x.requires_grad and torch.is_grad_enabled() and isinstance(out, Tensor) and not out.requires_grad:
        raise GradientMaskingError(
            f"gradient masking: {type(model).__name__}'s output has no gradient with respect to its input "
            f"(torch.no_grad, detach or argmax inside forward), so {type(attack).__name__} cannot attack it; "
            "use a gradient-free attack (advkit.attacks.Square, or 'square' in advkit.evaluate)")

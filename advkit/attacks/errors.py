"""Errors an attack raises when the model, not the caller, makes the attack meaningless."""
from __future__ import annotations


class GradientMaskingError(RuntimeError):
    """The model's output carries no gradient with respect to its input (``torch.no_grad`` or
    ``detach`` inside ``forward``, argmax one-hot outputs): gradient attacks cannot run on it and
    would report nothing or nonsense. Evaluate it with gradient-free attacks ("square") instead."""

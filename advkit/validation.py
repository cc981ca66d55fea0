"""Validation of what users pass in (images, labels, budgets, choices, a model's logits): clear
errors that name the argument, raised before any work, shared by attacks, training, evaluation and
defenses.

Numeric settings (step sizes, decays, counts) go through :func:`check_number`, the core's one
helper, so an attack and the step rule it builds reject NaN, Inf and out-of-range values alike."""
from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, fields
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from .core import check_number
from .core.norms import Norm, get_norm

__all__ = ["UNRECORDED", "check_choice", "check_classes_for_loss", "check_eps", "check_flag", "check_images",
           "check_label_range", "check_labels", "check_logits", "check_number", "fits_model", "options_from",
           "recorded"]

RANGE_TOLERANCE = 1e-6
#: Field metadata of an options dataclass's settings that its record (checkpoints, histories) leaves out.
UNRECORDED = {"recorded": False}
Options = TypeVar("Options")


def check_images(x, name: str = "x") -> Tensor:
    """A floating batch ``(N, ...)`` of finite values in [0, 1] (a tiny float tolerance allowed)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor in [0, 1], got dtype {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must be a batch of shape (N, C, H, W) or (N, D), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{name} must lie in [0, 1] (normalise inside the model with advkit.models.Normalize); "
                         f"saw min {lo:.4g}, max {hi:.4g}")
    return x.clamp(0.0, 1.0) if lo < 0 or hi > 1 else x


def check_labels(y, n: int, device: torch.device, name: str = "y") -> Tensor:
    """Integer class labels of shape (n,): a tensor or a numpy array of integers."""
    if isinstance(y, np.ndarray):
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class indices, got a numpy array of dtype {y.dtype}")
        y = torch.from_numpy(y.astype(np.int64))
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (or numpy array) of class indices, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the batch, got {tuple(y.shape)}")
    return y.to(device=device, dtype=torch.long)


def check_label_range(y: Tensor, num_classes: int, name: str = "y") -> None:
    if bool(((y < 0) | (y >= num_classes)).any()):
        raise ValueError(f"{name} must lie in [0, {num_classes}); saw {int(y.min())}..{int(y.max())}")


def check_classes_for_loss(loss: str, num_classes: int) -> None:
    """The DLR loss divides by the gap between the top logit and the third: it needs >= 3 classes."""
    if loss == "dlr" and num_classes < 3:
        raise ValueError(f"loss='dlr' needs at least 3 classes and the model returns {num_classes}; "
                         "use loss='ce' or loss='margin'")


def check_eps(eps, name: str = "eps", norm: str | Norm | None = None) -> float:
    """A finite, non-negative perturbation budget. Under a ``norm`` whose ball covers the whole
    [0, 1] range beyond some eps whatever the input size (:attr:`~advkit.core.Norm.whole_range_eps`:
    1 under L-inf), a budget above it is most likely meant in pixel units (8 for 8/255): a warning."""
    if isinstance(eps, Tensor):
        if eps.numel() != 1:
            raise TypeError(f"{name} must be a number")
        eps = float(eps)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        raise TypeError(f"{name} must be a number, got {type(eps).__name__}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {eps}")
    geometry = None if norm is None else get_norm(norm)
    if geometry is not None and geometry.whole_range_eps is not None and eps > geometry.whole_range_eps:
        warnings.warn(f"{name}={eps:g} exceeds {geometry.whole_range_eps:g}, the whole [0, 1] pixel range under "
                      f"{geometry.label}: images are in [0, 1], so a budget in pixel units needs dividing by 255 "
                      f"({eps:g}/255 = {eps / 255:.4g})", stacklevel=3)
    return float(eps)


def check_choice(value, choices, name: str):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_logits(out, n: int) -> Tensor:
    """The model must return (N, C) logits; anything else gets a message saying how to wrap it."""
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise TypeError(f"model must return logits of shape (N, num_classes) = ({n}, C); got {shape}. "
                        "For a dict or tuple output, wrap the model in an nn.Module whose forward returns only the "
                        "logits tensor; give a binary model two logits (torch.cat([-z, z], 1)).")
    if out.shape[1] < 2:
        raise TypeError("model must return at least 2 logits per sample; "
                        "for one binary logit z return torch.cat([-z, z], 1)")
    if not bool(torch.isfinite(out).all()):
        raise ValueError("model returned NaN or Inf logits on the clean input")
    row_sums = out.detach().float().sum(1)
    if bool((out >= 0).all() and (out <= 1).all() and torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-3)):
        warnings.warn("model outputs look like probabilities (rows in [0,1] summing to 1); attacks expect logits: "
                      "remove the final softmax for reliable gradients", stacklevel=3)
    return out


#: torch's messages when a layer gets inputs of another shape than it was built for: channels (conv,
#: BatchNorm, GroupNorm, LayerNorm), rank (conv), size (the first linear layer, pooling, kernels).
INPUT_SHAPE_ERRORS = re.compile("|".join((
    r"expected input\[.*\] to have \d+ channels",
    r"Expected \d+D \(unbatched\) or \d+D \(batched\) input",
    r"mat1 and mat2 shapes cannot be multiplied",
    r"Output size is too small",
    r"Kernel size can't be greater than actual input size",
    r"running_mean should contain \d+ elements",
    r"Expected weight to be a vector of size equal to the number of channels",
    r"Given normalized_shape=.* expected input with shape",
)))


@contextmanager
def fits_model(x: Tensor, name: str = "x") -> Iterator[None]:
    """Around the first forward of user data ``x`` through a model: a layer's shape error (``x`` has
    other channels, rank or size than the model was built for) becomes a ValueError that names
    ``name``'s shape, chained to torch's error; every other error passes through unchanged."""
    try:
        yield
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if not INPUT_SHAPE_ERRORS.search(first):
            raise
        raise ValueError(f"{name} of shape {tuple(x.shape)} does not fit the model, which expects other inputs "
                         f"({first}); pass data of the shape the model was built for (channels, size), or a model "
                         "built for this data") from err


def check_flag(value: Any, name: str) -> bool:
    """``value`` as a bool; TypeError naming ``name`` for anything but True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def options_from(cls: type[Options], options: Options | None, keywords: Mapping[str, Any]) -> Options:
    """The options of a call that takes its settings as keywords or as one options dataclass: ``options``
    when given, else ``cls(**keywords)`` (validated when built). TypeError when ``options`` is not a
    ``cls``, or when a keyword beside it departs from its default (the settings come one way only)."""
    if options is None:
        return cls(**keywords)
    if not isinstance(options, cls):
        raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(cls) if f.init}
    clashes = [name for name, value in keywords.items() if not _same(value, defaults[name])]
    if clashes:
        raise TypeError(f"pass the settings as keywords or in options=, not both: {', '.join(clashes)} given beside "
                        f"options=")
    return options


def _same(value: Any, default: Any) -> bool:
    return value is default or (type(value) is type(default) and value == default)


def recorded(options: Any) -> dict[str, Any]:
    """The settings of the options dataclass ``options`` that its record keeps (all fields but those whose
    metadata is :data:`UNRECORDED`), in field order."""
    return {f.name: getattr(options, f.name) for f in fields(options) if f.metadata.get("recorded", True)}

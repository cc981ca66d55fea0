"""The GPU path's switches, one place for evaluate, adversarial training and the GAN trainer.

``amp``: the model's forward passes run under bf16 autocast, on CUDA only; whatever reads the
outputs (losses, attack gradients, steps, projections) works on them cast back to float32.
``channels_last``: the model's 4-D weights in NHWC memory order (faster convolutions on tensor
cores). ``compile``: the model's calls go through :func:`torch.compile` (``True``, or a dict of its
keyword arguments such as ``{"mode": "max-autotune"}``). All are off by default, and bf16 never
applies on the CPU, so CPU results only change when a user asks for channels_last or compile.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn


def autocast(device: torch.device | str, enabled: bool) -> AbstractContextManager:
    """bf16 autocast for the block when ``enabled`` and ``device`` is CUDA; otherwise nothing."""
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def compile_options(value: Any, name: str = "compile") -> dict[str, Any] | None:
    """``value`` of a ``compile=`` argument as :func:`torch.compile`'s keyword arguments (None: off);
    ``True`` means its defaults. TypeError naming ``name`` for anything but a bool or a dict."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise TypeError(f"{name} must be True, False or a dict of torch.compile keyword arguments "
                    f"(e.g. {{'mode': 'max-autotune'}}); got {value!r}")


def is_channels_last(model: nn.Module) -> bool:
    """True when every 4-D weight of ``model`` is stored channels_last (and it has one)."""
    weights = [p for p in model.parameters() if p.ndim == 4]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


@contextmanager
def accelerated(model: nn.Module, channels_last: bool = False, compile: Any = False) -> Iterator[nn.Module]:
    """For the block, ``model`` itself with its weights channels_last and its calls compiled, as
    asked; both are undone at the end (a model that was channels_last already stays so), so the
    same object serves attacks bound to it and leaves as it came. Weights keep their values."""
    options = compile_options(compile)
    convert = channels_last and not is_channels_last(model)
    if convert:
        model.to(memory_format=torch.channels_last)
    previous = getattr(model, "_compiled_call_impl", None)
    if options is not None:
        model.compile(**options)
    try:
        yield model
    finally:
        if options is not None:
            model._compiled_call_impl = previous
        if convert:
            model.to(memory_format=torch.contiguous_format)


@contextmanager
def uncompiled(model: nn.Module) -> Iterator[None]:
    """``model``'s calls run eagerly for the block when :func:`accelerated` compiled them (torch.compile's
    autograd has no double backward, which a gradient penalty needs)."""
    compiled = getattr(model, "_compiled_call_impl", None)
    model._compiled_call_impl = None
    try:
        yield
    finally:
        model._compiled_call_impl = compiled


def full_precision(t: Tensor) -> Tensor:
    """``t`` in float32 when autocast made it bf16 or fp16; otherwise ``t`` itself."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def add_gpu_options(parser: argparse.ArgumentParser, what: str) -> None:
    """The command-line flags of the three switches (``--amp``, ``--channels-last``, ``--compile``)
    for a command whose networks are ``what``; :func:`gpu_options` reads them back."""
    parser.add_argument("--amp", action="store_true", help=f"bf16 autocast for {what} (CUDA only; none on the CPU)")
    parser.add_argument("--channels-last", action="store_true", help=f"{what} in channels_last memory order")
    parser.add_argument("--compile", action="store_true", help=f"{what} through torch.compile")


def gpu_options(args: argparse.Namespace) -> dict[str, bool]:
    """The keyword arguments ``amp``, ``channels_last`` and ``compile`` from :func:`add_gpu_options`' flags."""
    return {"amp": args.amp, "channels_last": args.channels_last, "compile": args.compile}


__all__ = ["accelerated", "add_gpu_options", "autocast", "compile_options", "full_precision", "gpu_options",
           "is_channels_last", "uncompiled"]

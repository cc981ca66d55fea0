"""Where computation runs: the one place that picks, inspects and checks devices."""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter or buffer lives; :func:`default_device` for a stateless model."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return default_device() if first is None else first.device


@contextmanager
def placed(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Move ``model`` to ``device`` for the block and back to where it was afterwards."""
    home = model_device(model)
    model.to(device)
    try:
        yield
    finally:
        model.to(home)


def device_problem(name: str) -> str | None:
    """Why ``name`` is not a device this machine can compute on (None when it is), worded for a user."""
    try:
        device = torch.device(name)
    except RuntimeError:
        return f"{name!r} is not a device name; use cpu, cuda or cuda:N"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return (f"{name} asks for a CUDA GPU but this machine has none that torch can use "
                    "(torch.cuda.is_available() is False); use cpu or leave the device out")
        if device.index is not None and device.index >= torch.cuda.device_count():
            return (f"{name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                    f"numbered 0..{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            return f"{name}: Apple's MPS backend is not available here; use cpu"
    elif device.type != "cpu":
        return f"{name}: advkit runs on cpu, cuda or mps devices"
    return None


__all__ = ["default_device", "device_problem", "model_device", "placed"]

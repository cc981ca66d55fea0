"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write ``path`` through ``write(handle)`` into a temporary file beside it, flush it to disk,
    then rename it over ``path`` (the parent folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def save_tensors(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, cached models)."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8 ``text`` to ``path`` atomically (reports)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))

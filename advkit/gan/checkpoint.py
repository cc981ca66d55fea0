"""Atomic GAN checkpoints: write to a temp file, fsync, ``os.replace``; load with ``weights_only``."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

PATTERN = "gan_{step:07d}.pt"


def path_for(directory: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives in ``directory``."""
    return Path(directory) / PATTERN.format(step=step)


def save(state: dict[str, Any], directory: str | Path, step: int, keep: int = 3) -> Path:
    """Write ``state`` as the checkpoint of ``step`` atomically (a reader never sees half a file),
    then delete all but the newest ``keep`` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = path_for(directory, step)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    for old in sorted(directory.glob("gan_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(directory: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint in ``directory`` that loads, or None; unreadable files are skipped with a warning."""
    for path in sorted(Path(directory).glob("gan_*.pt"), reverse=True):
        try:
            return torch.load(path, map_location="cpu", weights_only=True), path
        except Exception as err:  # a torn or foreign file: fall back to an older checkpoint
            log.warning("skipping unreadable checkpoint %s: %s", path, err)
    return None

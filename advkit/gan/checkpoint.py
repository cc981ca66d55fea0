"""Atomic GAN checkpoints (:func:`advkit.files.save_tensors`), the newest few kept; loaded with ``weights_only``."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..files import save_tensors

log = logging.getLogger(__name__)

PATTERN = "gan_{step:07d}.pt"


def path_for(directory: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives in ``directory``."""
    return Path(directory) / PATTERN.format(step=step)


def save(state: dict[str, Any], directory: str | Path, step: int, keep: int = 3) -> Path:
    """Write ``state`` as the checkpoint of ``step`` atomically (a reader never sees half a file),
    then delete all but the newest ``keep`` checkpoints."""
    directory = Path(directory)
    path = save_tensors(state, path_for(directory, step))
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

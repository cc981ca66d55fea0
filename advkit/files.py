"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.
Reading what they wrote back: :func:`load_tensors`, which never runs code from a file."""
from __future__ import annotations

import os
import pickle
import re
import warnings
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


def load_tensors(path: str | Path, what: str = "a checkpoint", advice: str = "") -> Any:
    """What ``torch.save`` wrote to ``path``, read with ``torch.load(..., map_location="cpu",
    weights_only=True)``, which builds tensors and plain values and never runs code from the file.

    Every load of a saved model, checkpoint, attack or cache goes through here. A missing path is a
    FileNotFoundError; a file holding other Python objects (a whole pickled model, a crafted file),
    or one that is not a ``torch.save`` file or is damaged, is a one-line ValueError naming the file
    and ``what`` it should be, followed by ``advice`` (what to do) when given. OSErrors pass through.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} was expected at {str(path)!r}, which "
                                + ("is not a file" if path.exists() else "does not exist"))
    todo = f"; {advice}" if advice else ""
    try:
        with warnings.catch_warnings():  # torch warns about the protocol of a raw pickle it is about to refuse
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as err:  # unpickling arbitrary bytes fails in many ways (KeyError on a text file)
        refused = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if refused:  # weights_only met a global it does not admit: code or objects, never run or built
            raise ValueError(f"{path} holds Python objects besides tensors ({refused.group(1)}); advkit reads {what} "
                             f"with weights_only=True, which never runs code from a file{todo}") from err
        raise ValueError(f"{path} is not {what} written by torch.save, or it is damaged "
                         f"({type(err).__name__}){todo}") from err

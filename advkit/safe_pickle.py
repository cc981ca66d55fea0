"""Reading pickles of plain data (CIFAR-10's python batches) without running code from the file.

``pickle.load`` calls whatever global a file names, so a crafted batch file runs a shell command.
:func:`load` admits only the globals that rebuild numeric numpy arrays, numpy numbers and bytes
(numpy 1's ``numpy.core`` and numpy 2's ``numpy._core`` names, pickle protocols 2 to 5); dicts,
lists, tuples, strings, bytes and numbers need no global. Anything else, and object dtypes, is
refused before it is called, and the loaded value is checked to hold only those types.
"""
from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: What a file read by :func:`load` may hold, for messages.
PLAIN_DATA = "dicts, lists, strings, bytes, numbers and numpy arrays of numbers"


class RefusedGlobal(pickle.UnpicklingError):
    """The file names a global that :func:`load` does not admit."""


def _numeric_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise RefusedGlobal(f"numpy.dtype({dtype.str!r}) (an object dtype)")
    return dtype


def _latin1(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode``, as protocol 2 writes bytes (``encode(text, "latin1")``), and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    """The globals numpy's pickles name, under numpy 1's and numpy 2's module names alike."""
    try:
        multiarray, numeric = (importlib.import_module(f"numpy._core.{m}") for m in ("multiarray", "numeric"))
    except ImportError:  # numpy 1
        multiarray, numeric = (importlib.import_module(f"numpy.core.{m}") for m in ("multiarray", "numeric"))
    found: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _numeric_dtype,
        ("_codecs", "encode"): _latin1,
    }
    for package in ("numpy.core", "numpy._core"):
        found[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        found[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        found[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return found


class _PlainDataUnpickler(pickle.Unpickler):
    allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def load(path: str | Path, what: str) -> Any:
    """The object pickled in ``path`` (Python 2 files read as latin-1, as numpy's own loaders do),
    which may hold only :data:`PLAIN_DATA`. A file naming any other global (code to run) is a
    ValueError that names the global and the file, raised before anything of it is called; so is a
    file that is not a pickle or is cut short. ``what`` names the files for the message
    (``"CIFAR-10 batches"``)."""
    try:
        with open(path, "rb") as handle:
            value = _PlainDataUnpickler(handle, encoding="latin1").load()
    except RefusedGlobal as err:
        raise ValueError(f"refusing to unpickle {err} from {path}: {what} hold only {PLAIN_DATA}; this file is "
                         "not one of them (crafted or damaged): replace it with the original") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not one of the {what} (not a pickle, or cut short: {type(err).__name__}); "
                         "replace it with the original") from None
    _check_plain(value, path, what)
    return value


def _check_plain(value: Any, path: str | Path, what: str) -> None:
    """ValueError unless ``value`` holds only :data:`PLAIN_DATA` (and tuples), all the way down."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:  # a pickle may nest a list in itself
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, (np.ndarray, np.generic)):
            if item.dtype.hasobject or item.dtype.kind not in "biufc":
                raise ValueError(f"refusing {path}: it holds a numpy array of dtype {item.dtype}; {what} hold only "
                                 f"{PLAIN_DATA}")
        elif not isinstance(item, (str, bytes, int, float, bool, type(None))):
            raise ValueError(f"refusing {path}: it holds a {type(item).__name__}; {what} hold only {PLAIN_DATA}")

"""Where a long run writes: checked before the work, and finished work kept when the write fails anyway.

:func:`check_folder` refuses, before any training or attacking, an output folder that cannot be
written: an existing file, a path with a file in the way above it, a folder (or the nearest existing
folder above it) this process may not write into, and, for a report folder, the current folder or one
above it (a report folder is replaced as a whole; ``.`` would be the user's working folder). The
commands call it for every output and checkpoint folder (``advkit evaluate``, ``defend``, ``gan``,
``demo``).

Permissions can still change, or a disk fill up, while the run works. :func:`save_or_rescue` writes
finished work where it was asked for and, when that raises an ``OSError``, into a fresh folder
(:func:`rescue_folder`, in the temporary folder, else the current one), then raises
:class:`OutputError` saying where the work is, and logs it.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class OutputError(OSError):
    """Finished work could not be written where it was asked for; the message says where it is instead."""


def check_folder(path: str | Path, option: str, *, report: bool = False) -> Path:
    """``path`` once a folder can be made or written there (ValueError naming ``option`` otherwise): not a
    file, no file above it, and the folder, or the nearest existing one above it, writable by this
    process (``os.access``: on a read-only file system too). ``report``: the folder is replaced as a
    whole (a report folder), so it must not be the current folder or one above it, and its parent must
    be writable as well. Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; name a folder (a new one, or one this command wrote)")
    if report and path.resolve() in (Path.cwd(), *Path.cwd().parents):
        where = "the current folder" if path.resolve() == Path.cwd() else "above the current folder"
        raise ValueError(f"{option} {path} is {where}; name a folder for the report (e.g. {option} advkit-report): "
                         "the whole folder is written anew")
    existing = path if path.exists() else _nearest_existing(path.parent)
    if not existing.is_dir():
        raise ValueError(f"{option} {path} cannot be created: {existing} is a file")
    places = [existing] + ([_nearest_existing(path.parent)] if report and path.exists() else [])
    for place in places:
        if not os.access(place, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path} cannot be written: {place} is not writable for this user (or is on a "
                             "read-only file system); name another folder")
    return path


def _nearest_existing(path: Path) -> Path:
    """``path`` or the closest folder above it that exists (a relative path ends at the current folder)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def rescue_folder(name: str) -> Path:
    """A fresh, uniquely named folder ``advkit-rescued-{name}-*`` in the temporary folder, or in the
    current folder when the temporary one cannot take it."""
    problems = []
    for place in (tempfile.gettempdir(), os.getcwd()):
        try:
            return Path(tempfile.mkdtemp(prefix=f"advkit-rescued-{name}-", dir=place))
        except OSError as err:
            problems.append(f"{place}: {err}")
    raise OutputError(f"no folder to rescue the {name} in ({'; '.join(problems)})")


def save_or_rescue(out: str | Path, write: Callable[[Path], T], what: str, name: str) -> T:
    """``write(out)``; when it raises an ``OSError`` (disk full, permissions changed during the run),
    ``write`` into a :func:`rescue_folder` and raise :class:`OutputError` naming ``out``, the error and
    where ``what`` is now (also logged). When the rescue fails too, OutputError names both failures."""
    try:
        return write(Path(out))
    except OSError as err:
        failure = f"cannot write {what} into {out} ({err.__class__.__name__}: {err})"
        try:
            place = rescue_folder(name)
            write(place)
        except OSError as again:
            log.error("%s; the rescue failed too: %s", failure, again)
            raise OutputError(f"{failure}; writing it elsewhere failed too ({again})") from err
        log.error("%s; %s is saved in %s instead", failure, what, place)
        raise OutputError(f"{failure}; {what} is saved in {place} instead: move it where it belongs") from err


__all__ = ["OutputError", "check_folder", "rescue_folder", "save_or_rescue"]

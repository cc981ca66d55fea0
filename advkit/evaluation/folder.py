"""Writing a report folder as a whole, without ever losing or hiding a file of the user's.

Whose files: a report folder holds ``report.json`` with advkit's manifest, ``"advkit_report": 1``
(the manifest's format and version), ``"files"`` (the plain names of the files the report wrote)
and ``"sha256"`` (their digests). Only such a manifest is trusted, and only for the files that are
still what advkit wrote (a regular file with the recorded digest): those are the report's own;
every other entry of the folder is the user's. A ``report.json`` without the marker (another
tool's, or one from an advkit before the marker) makes the folder a foreign one.

Saving into ``out`` (a symbolic link to a folder: into the folder it points to) happens under an
exclusive lock (``.NAME.lock`` beside the folder, removed after the save); a second save into the
same folder meanwhile is refused, not interleaved. In order:

1. Leftovers of a save that was killed are dealt with: a hidden ``.NAME.new-*`` folder (a report
   never swapped in) is removed; a ``.NAME.old-*`` folder (a swap cut short) becomes ``out`` again
   when ``out`` is missing, and otherwise its user entries move into ``out`` and the old report's
   own files are deleted.
2. Refused before any work (:class:`FolderError`, with what to do instead): ``out`` is a file, the
   current folder, the root or a link to nothing; ``out`` holds entries but no trusted manifest,
   unless each is a file the new report writes. Refused with ``PermissionError``: the parent or
   ``out`` is not writable, or a folder of the user's inside ``out`` (moving it rewrites its ``..``).
3. The new report is built in a hidden sibling (``.NAME.new-*``). A user's file with the name of a
   file the new report writes is refused (FolderError) unless it holds the very same bytes (a
   section's picture saved into the folder before saving: replacing it changes nothing).
4. The swap, with renames: the old folder goes aside (``.NAME.old-*``), the new one takes its
   name and the user's entries move from the old folder into the new one; if a rename fails, the
   ones done are undone and the old folder is back as it was. Then the old report's own files are
   deleted and its folder removed.

An interrupt while the new report is being built removes the hidden folder and leaves the old
report untouched; an interrupt during the swap is held back until the swap is done (main thread).
A hard kill (``kill -9``, power loss) leaves hidden folders that the next save into ``out``
recovers (step 1). The lock is ``fcntl.flock``: POSIX systems only.
"""
from __future__ import annotations

import fcntl
import filecmp
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The file that marks a folder as an advkit report; it carries the manifest.
MARKER = "report.json"
#: The manifest's marker key and the version of the manifest this advkit writes and trusts.
MANIFEST_KEY, MANIFEST_VERSION = "advkit_report", 1


class FolderError(FileExistsError, ValueError):
    """A report folder that cannot be written as asked (the message says what to do instead).
    Also a ValueError: the command line answers it with one line."""


def manifest(folder: Path, names: Sequence[str]) -> dict[str, Any]:
    """The manifest entries for ``report.json`` when the report wrote ``names`` (``MARKER`` among
    them) into ``folder``: the marker, the names and the digests of the files written so far."""
    return {MANIFEST_KEY: MANIFEST_VERSION, "files": list(names),
            "sha256": {name: _digest(folder / name) for name in names if name != MARKER}}


def report_files(folder: Path) -> set[str] | None:
    """The names of the entries of ``folder`` that its advkit report wrote and that are unchanged
    since, or None when ``folder`` holds no trusted manifest (see the module docstring)."""
    marker = Path(folder) / MARKER
    if not _regular(marker):
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or type(data.get(MANIFEST_KEY)) is not int or data[MANIFEST_KEY] != MANIFEST_VERSION:
        return None
    names, digests = data.get("files"), data.get("sha256")
    if not isinstance(names, list) or not isinstance(digests, dict) or not all(map(_plain, names)):
        return None
    return {MARKER} | {name for name in names if name != MARKER and isinstance(digests.get(name), str)
                       and _regular(marker.parent / name) and _digest(marker.parent / name) == digests[name]}


def write_folder(out: str | Path, write: Callable[[Path], None], names: Iterable[str]) -> Path:
    """Build a report with ``write(folder)`` (it writes the files ``names`` and ``report.json``
    with :func:`manifest`) in a hidden sibling of ``out`` and swap it in for ``out`` as the module
    docstring describes. Returns ``out``."""
    given, out = Path(out), _target(Path(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_writable([out.parent], given)
    with _locked(out, given):
        _recover(out)
        theirs = _users_entries(out, set(names), given)
        _check_writable([out, *(out / name for name in theirs if _is_dir(out / name))] if out.exists() else [], given)
        stage = _new_stage(out)
        try:
            write(stage)
            replaced = [name for name in theirs if os.path.lexists(stage / name)]
            changed = [name for name in replaced if not _same_bytes(out / name, stage / name)]
            if changed:
                raise FolderError(f"out_dir {given} holds {_listing(changed)}, which advkit did not write (or which "
                                  "changed since it did), and the new report writes files of that name: move or rename "
                                  "them, or choose another folder")
            with _interrupts_held():
                _swap(stage, out, keep=[name for name in theirs if name not in replaced], replaced=set(replaced))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return given


def _new_stage(out: Path) -> Path:
    """An empty hidden sibling of ``out`` to build the report in, with ``out``'s permissions when it
    exists and the umask's otherwise (``mkdtemp``'s 0700 would make every report private)."""
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-"))
    if out.exists():
        os.chmod(stage, stat.S_IMODE(out.stat().st_mode))
    else:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)
    return stage


def _target(out: Path) -> Path:
    """The folder a save into ``out`` replaces: ``out`` itself, or the folder a link points to."""
    if out.is_symlink() and not out.exists():
        raise FolderError(f"out_dir {out} is a symbolic link to {os.readlink(out)}, which does not exist: create "
                          "that folder or choose another")
    target = out.resolve()
    if target.exists() and not target.is_dir():
        raise FolderError(f"out_dir {out} exists and is not a folder; choose a folder name")
    try:
        here = Path.cwd().resolve()
    except OSError:  # the current folder was removed
        here = None
    if target == here or target.parent == target:
        raise FolderError(f"out_dir {out} is the current folder or the root: a report replaces its folder as a "
                          f"whole; choose a folder inside it, e.g. {out / 'report'}")
    return target


def _users_entries(out: Path, names: set[str], given: Path) -> list[str]:
    """The entries of ``out`` that are the user's (not its report's own), checked before any work:
    a folder without a trusted manifest may only hold files named in ``names`` (the new report's;
    they are compared with them once it is written)."""
    entries = sorted(os.listdir(out)) if out.exists() else []
    ours = report_files(out) if entries else set()
    if ours is None and not set(entries) <= names:
        raise FolderError(f"out_dir {given} is not empty and holds no advkit report ({_listing(entries)}): refusing "
                          "to write into it; choose a new or empty folder, or the folder of an earlier report")
    return [name for name in entries if name not in (ours or set())]


def _check_writable(paths: Sequence[Path], given: Path) -> None:
    """PermissionError, before anything moves, when one of ``paths`` is not writable."""
    denied = [p for p in paths if not os.access(p, os.W_OK | os.X_OK)]
    if denied:
        raise PermissionError(f"cannot save the report into {given}: {denied[0]} is not writable (a save replaces the "
                              "folder and moves your files into the new one); nothing was changed; make it writable "
                              "or choose another folder")


@contextmanager
def _locked(out: Path, given: Path) -> Iterator[None]:
    """Hold an exclusive lock on saving into ``out`` for the block; FolderError when another save
    holds it. The lock file goes with the save (one that was replaced while we waited is retried)."""
    path = out.with_name(f".{out.name}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderError(f"another save is writing into {given} right now: wait until it ends and save again, "
                              "or choose another folder") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed that lock file as it finished: lock a new one
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before the lock is released: the next save locks a new file
        os.close(fd)


def _recover(out: Path) -> None:
    """Remove the unfinished reports of killed saves into ``out`` and bring back the folders a
    killed swap left aside (into ``out``, or their user entries into the new ``out``)."""
    pattern = glob.escape(f".{out.name}.")
    for stage in out.parent.glob(pattern + "new-*"):
        if _is_dir(stage):
            log.warning("removing %s, an unfinished report of an interrupted save", stage)
            shutil.rmtree(stage)
    for aside in sorted(out.parent.glob(pattern + "old-*"), key=lambda p: p.lstat().st_mtime):
        if not _is_dir(aside):
            continue
        log.warning("recovering %s, left by an interrupted save, into %s", aside, out)
        if out.exists():
            _empty_into(aside, out, drop=report_files(aside) or set())
        else:
            os.rename(aside, out)


def _swap(stage: Path, out: Path, keep: Sequence[str], replaced: set[str]) -> None:
    """Rename ``stage`` to ``out``; an existing ``out`` goes aside first and its entries ``keep``
    move into the new folder (all undone if a rename fails), then its report's own files (checked
    again) and its files ``replaced`` by identical ones are deleted and it is removed."""
    if not out.exists():
        os.rename(stage, out)
        return
    aside = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
    done: list[tuple[Path, Path]] = []
    try:
        for source, target in [(out, aside), (stage, out), *((aside / name, out / name) for name in keep)]:
            os.rename(source, target)
            done.append((source, target))
    except BaseException:
        for source, target in reversed(done):
            os.rename(target, source)
        raise
    _empty_into(aside, out, drop=(report_files(aside) or set()) | replaced)


def _empty_into(old: Path, out: Path, drop: set[str]) -> None:
    """Delete the files ``drop`` of the folder ``old``, move its other entries into ``out`` and
    remove it; FolderError when an entry to move has a namesake in ``out`` (nothing is overwritten)."""
    for entry in sorted(os.listdir(old)):
        if entry in drop:
            os.unlink(old / entry)
        elif os.path.lexists(out / entry):
            raise FolderError(f"{old}, left by an interrupted save, holds {entry} and {out} holds another {entry}: "
                              f"move one of them away and save again")
        else:
            os.rename(old / entry, out / entry)
    os.rmdir(old)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain(name: object) -> bool:
    """A file name with no folder in it."""
    return (isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")
            and os.path.basename(name) == name)


def _regular(path: Path) -> bool:
    """A regular file (not a link, not a folder)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    """A folder (not a link to one)."""
    return path.is_dir() and not path.is_symlink()


def _same_bytes(a: Path, b: Path) -> bool:
    return _regular(a) and _regular(b) and filecmp.cmp(a, b, shallow=False)


def _listing(names: Sequence[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold SIGINT back for the block and deliver it to the previous handler after (Ctrl-C then
    raises KeyboardInterrupt as usual); a no-op off the main thread, where handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[object] = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)

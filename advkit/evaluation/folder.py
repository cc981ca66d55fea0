"""Writing a report folder as a whole: a reader, a crash or Ctrl-C sees the old report or the new
one, never a mix of the two.

The new report is built in a hidden sibling folder (``.NAME.new-*``), then swapped in with two
renames: the old folder is moved aside (``.NAME.old-*``), the new one takes its name, and the old
one is removed. Files in the old folder that its report did not write (a user's notes) move into
the new folder; files the old report wrote and the new one does not (another model's example
grid) go away with it. A non-empty folder that holds no advkit report is never replaced, unless
all it holds are files the new report writes itself (its pictures, put there before saving).

An interrupt while the new report is being built removes the hidden folder and leaves the old
report untouched; an interrupt during the swap is held back until the swap is done (main thread).
Only a hard kill (``kill -9``, power loss) inside the swap's few renames can leave the old report
in its ``.NAME.old-*`` folder beside the parent.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: The file that marks a folder as an advkit report; its "files" list names what the report wrote.
MARKER = "report.json"
#: What a report written before reports listed their files could hold (examples_*.png too).
_LEGACY_FILES = {"report.json", "report.md", "report.html", "curve.png"}


def report_files(folder: Path) -> set[str] | None:
    """The names of the files the advkit report in ``folder`` wrote, or None when ``folder`` holds
    no advkit report (no readable ``report.json`` with a report ``format``)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "format" not in data:
        return None
    if isinstance(data.get("files"), list):
        return {str(name) for name in data["files"]}
    sections = data.get("sections") if isinstance(data.get("sections"), list) else []
    images = {str(i) for s in sections if isinstance(s, dict) for i in s.get("images", [])}
    examples = {p.name for p in folder.glob("examples_*.png")}
    return _LEGACY_FILES | images | examples


def write_folder(out: str | Path, write: Callable[[Path], Iterable[str]], names: Iterable[str] = ()) -> Path:
    """Build a report with ``write(folder)`` (it returns the names it wrote; ``names``: those it will
    write, known beforehand) in a hidden sibling of ``out`` and swap it in for ``out`` as described
    in the module docstring. Returns ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {out} exists and is not a folder; choose a folder name")
    old = report_files(out) if out.exists() else set()
    if old is None and not {p.name for p in out.iterdir()} <= set(names):
        raise FileExistsError(f"out_dir {out} is not empty and holds no advkit report: refusing to replace it; "
                              "choose a new or empty folder, or the folder of an earlier report")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-"))
    try:
        written = set(write(stage))
        with _interrupts_held():
            _swap(stage, out, keep=lambda name: name not in (old or set()) and name not in written)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def _swap(stage: Path, out: Path, keep: Callable[[str], bool]) -> None:
    """Rename ``stage`` to ``out``; an existing ``out`` goes aside first, the entries ``keep``
    accepts move from it into the new folder, and the rest is removed."""
    if not out.exists():
        os.rename(stage, out)
        return
    aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.rename(out, aside)  # replaces the empty folder mkdtemp made
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(aside, out)
        raise
    for entry in aside.iterdir():
        if keep(entry.name):
            os.rename(entry, out / entry.name)
    shutil.rmtree(aside)


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

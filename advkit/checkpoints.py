"""Checkpoints of one run in a folder, never mixed with another run's.

Every run has an identity (:func:`new_run_id`). Its checkpoints are named
``{prefix}-{run_id}-{step:07d}.pt``, hold the run id again under ``"run_id"``, are written atomically
(:func:`advkit.files.save_tensors`) and loaded with ``torch.load(..., weights_only=True)``. Listing,
pruning and loading look at one run's files only; a new run refuses a folder that holds another
run's checkpoints (:meth:`CheckpointFolder.claim`), and resuming with nothing loadable is an error.
Used by the GAN trainer; written for any training loop whose state is a dict of tensors and plain values.
"""
from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Any

from .files import load_tensors, save_tensors

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A fresh random run identity (12 hex digits, from the OS, so no torch RNG stream moves)."""
    return secrets.token_hex(6)


class CheckpointFolder:
    """The checkpoints in ``directory`` whose names start with ``prefix``, grouped by run.

    ``keep``: how many of a run's newest checkpoints :meth:`save` leaves on disk (older ones of the
    same run are deleted; other runs' files are never touched).
    """

    def __init__(self, directory: str | Path, prefix: str, keep: int = 3):
        if not re.fullmatch(r"[A-Za-z0-9_]+", prefix):
            raise ValueError(f"prefix must be letters, digits or '_'; got {prefix!r}")
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1; got {keep!r}")
        self.directory, self.prefix, self.keep = Path(directory), prefix, keep
        self._name = re.compile(rf"{prefix}-([0-9a-f]+)-(\d+)\.pt")

    def path_for(self, run_id: str, step: int) -> Path:
        """Where ``run_id``'s checkpoint of ``step`` lives."""
        return self.directory / f"{self.prefix}-{run_id}-{step:07d}.pt"

    def runs(self) -> dict[str, list[tuple[int, Path]]]:
        """Run id -> that run's ``(step, path)`` checkpoints, oldest step first. Files with the prefix
        whose names carry no run id (written by older versions) are grouped under ``"?"``."""
        found: dict[str, list[tuple[int, Path]]] = {}
        if not self.directory.is_dir():
            return found
        for path in self.directory.glob(f"{self.prefix}[-_]*.pt"):
            match = self._name.fullmatch(path.name)
            run_id, step = (match.group(1), int(match.group(2))) if match else ("?", -1)
            found.setdefault(run_id, []).append((step, path))
        return {run: sorted(files) for run, files in found.items()}

    def claim(self, run_id: str) -> None:
        """Refuse (ValueError) when the folder holds checkpoints of any run other than ``run_id``."""
        others = {run: files for run, files in self.runs().items() if run != run_id}
        if others:
            names = ", ".join(sorted(p.name for files in others.values() for _, p in files)[:4])
            raise ValueError(
                f"{self.directory} holds checkpoints of another run ({names}); a new run will not write beside them. "
                f"Use another checkpoint folder, pass resume=True to continue that run, or delete those files.")

    def save(self, state: dict[str, Any], run_id: str, step: int) -> Path:
        """Write ``state`` (with ``"run_id"`` set) as ``run_id``'s checkpoint of ``step`` atomically, then
        delete that run's checkpoints beyond the newest ``keep``."""
        path = save_tensors({**state, "run_id": run_id}, self.path_for(run_id, step))
        for _, old in self.runs().get(run_id, [])[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def resumable_run(self, run_id: str | None = None) -> str:
        """The run to resume: ``run_id`` when it has checkpoints here, else the only run in the folder.
        FileNotFoundError when there is none, ValueError when several runs make it ambiguous."""
        runs = {run: files for run, files in self.runs().items() if run != "?"}
        if run_id in runs:
            return run_id
        if not runs:
            raise FileNotFoundError(f"resume=True but {self.directory} holds no {self.prefix} checkpoint to resume "
                                    f"from; start without resume, or point to the folder of the run to continue")
        if len(runs) > 1:
            raise ValueError(f"{self.directory} holds checkpoints of several runs ({', '.join(sorted(runs))}); "
                             f"keep only the run to resume in that folder")
        return next(iter(runs))

    def load_latest(self, run_id: str) -> tuple[dict[str, Any], Path]:
        """``run_id``'s newest checkpoint that loads (``weights_only=True``, on the CPU) and names that run.

        Unreadable or foreign files are skipped with a warning; ValueError when none is valid.
        """
        files = self.runs().get(run_id, [])
        if not files:
            raise FileNotFoundError(f"{self.directory} holds no checkpoint of run {run_id}")
        for _step, path in reversed(files):
            try:
                state = load_tensors(path, "a checkpoint")
            except (OSError, ValueError) as err:
                # torn or corrupt: try older
                log.warning("skipping unreadable checkpoint %s: %s", path, err)
                continue
            if not isinstance(state, dict) or state.get("run_id") != run_id:
                log.warning("skipping %s: it does not hold a checkpoint of run %s", path, run_id)
                continue
            return state, path
        raise ValueError(f"none of the {len(files)} checkpoints of run {run_id} in {self.directory} can be loaded "
                         f"(all unreadable or corrupt); delete them and start again without resume")


__all__ = ["CheckpointFolder", "new_run_id"]

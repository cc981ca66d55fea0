"""Checkpoints of one run in a folder, never mixed with another run's, and never resumed by another run.

Every run has an identity (:func:`new_run_id`). Its checkpoints are named
``{prefix}-{run_id}-{step:07d}.pt``, hold the run id again under ``"run_id"``, are written atomically
(:func:`advkit.files.save_tensors`) and loaded with ``torch.load(..., weights_only=True)``. Listing,
pruning and loading look at one run's files only; a new run refuses a folder that holds another
run's checkpoints (:meth:`CheckpointFolder.claim`), and resuming with nothing loadable is an error.

What defines a run is recorded in each checkpoint under ``"identity"`` (:func:`run_identity`): the
settings that shape its trajectory, a fingerprint of its data (:func:`sample_fingerprint`: its size and
a seeded sample of its items, read without loading the rest; tensors of its own, such as a fixed
adversarial set or a classifier's weights: :func:`fingerprint`, SHA-256 of every byte) and the
architecture of each network (state-dict names and shapes). :meth:`CheckpointFolder.resume`
refuses a checkpoint whose identity differs from the resuming call's (:func:`check_resume`: one
ValueError naming every difference), a finished run included. A checkpoint written before identities
were recorded is resumed with a warning, checking what it holds (the networks' shapes, a ``"config"``):
refusing it would strand every run begun before the upgrade.
Used by the GAN trainer (and AdvGAN's) and adversarial training and fine-tuning; written for any
training loop whose state is a dict of tensors and plain values.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .files import load_tensors, save_tensors
from .outputs import check_folder, save_or_rescue

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A fresh random run identity (12 hex digits, from the OS, so no torch RNG stream moves)."""
    return secrets.token_hex(6)


class CheckpointFolder:
    """The checkpoints in ``directory`` whose names start with ``prefix``, grouped by run.

    ``keep``: how many of a run's newest checkpoints :meth:`save` leaves on disk (older ones of the
    same run are deleted; other runs' files are never touched). ``identity``: what defines the run
    writing or resuming here (:func:`run_identity`); :meth:`save` records it and :meth:`resume` checks it.
    """

    def __init__(self, directory: str | Path, prefix: str, keep: int = 3, identity: dict[str, Any] | None = None):
        if not re.fullmatch(r"[A-Za-z0-9_]+", prefix):
            raise ValueError(f"prefix must be letters, digits or '_'; got {prefix!r}")
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1; got {keep!r}")
        self.directory, self.prefix, self.keep, self.identity = Path(directory), prefix, keep, identity
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
        """Refuse (ValueError) when the folder holds checkpoints of any run other than ``run_id``, or cannot
        be written (:func:`advkit.outputs.check_folder`: a file, a file above it, not writable)."""
        check_folder(self.directory, "checkpoint_dir")
        others = {run: files for run, files in self.runs().items() if run != run_id}
        if others:
            names = ", ".join(sorted(p.name for files in others.values() for _, p in files)[:4])
            raise ValueError(
                f"{self.directory} holds checkpoints of another run ({names}); a new run will not write beside them. "
                f"Use another checkpoint folder, pass resume=True to continue that run, or delete those files.")

    def save(self, state: dict[str, Any], run_id: str, step: int) -> Path:
        """Write ``state`` (with ``"run_id"`` and the folder's ``"identity"`` set) as ``run_id``'s checkpoint of
        ``step`` atomically, then delete that run's checkpoints beyond the newest ``keep``. When the folder
        cannot take it (disk full, permissions changed), the checkpoint goes into a fresh rescue folder and
        :class:`advkit.outputs.OutputError` says where (resume from there)."""
        recorded = {} if self.identity is None else {IDENTITY: self.identity}
        name = self.path_for(run_id, step).name
        path = save_or_rescue(self.directory, lambda folder: save_tensors({**state, **recorded, "run_id": run_id},
                                                                          folder / name),
                              f"the checkpoint {name}", self.prefix)
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


    def resume(self, run_id: str | None = None) -> tuple[str, dict[str, Any], Path]:
        """The run to resume (:meth:`resumable_run`), its newest valid checkpoint and that file, once the
        checkpoint's identity matches the folder's (:func:`check_resume`; ValueError otherwise)."""
        run = self.resumable_run(run_id)
        state, path = self.load_latest(run)
        if self.identity is not None:
            check_resume(state, self.identity, path.name)
        return run, state, path


#: The key of a checkpoint's run identity, and the version of its layout.
#: Version 2 fingerprints a run's data by a seeded sample of its items (:func:`sample_fingerprint`);
#: version 1 hashed every byte, so a version-1 checkpoint's data fingerprints are not compared.
IDENTITY, IDENTITY_VERSION = "identity", 2
#: How many items :func:`sample_fingerprint` reads, and the seed that picks them.
FINGERPRINT_ITEMS, FINGERPRINT_SEED = 64, 20240521


def fingerprint(*tensors: Tensor | None) -> str:
    """SHA-256 (hex) of ``tensors`` in order: each one's dtype, shape and every byte of its values (taken
    on the CPU, so a tensor has one fingerprint on any device); None counts as an absent tensor."""
    digest = hashlib.sha256()
    for t in tensors:
        if t is None:
            digest.update(b"none;")
            continue
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def sample_fingerprint(data: Any, items: int = FINGERPRINT_ITEMS) -> str:
    """SHA-256 (hex) of the number of samples of ``data`` (a reader such as :class:`advkit.data.Samples`:
    ``len`` and ``read(index)`` returning tensors) and the :func:`fingerprint` of ``items`` of them at
    positions drawn with a fixed seed: cheap for data of any size and read without loading it. Other data
    of another size, or differing in a sampled item, differ; data differing only in items not sampled do not.

    Args:
        data: the samples, read by index.
        items: how many samples are read.
    """
    n = len(data)
    positions = torch.randperm(n, generator=torch.Generator().manual_seed(FINGERPRINT_SEED))[:items].sort().values
    digest = hashlib.sha256(f"{n} samples;".encode())
    digest.update(fingerprint(*data.read(positions)).encode())
    return digest.hexdigest()


def _data_fingerprint(part: Any) -> str:
    """A ``run_identity`` data entry's fingerprint: a reader's sampled, tensors' every byte."""
    if hasattr(part, "read") and hasattr(part, "__len__"):
        return sample_fingerprint(part)
    return fingerprint(*([part] if isinstance(part, Tensor) or part is None else part))


def architecture(weights: nn.Module | Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The names and shapes of a network's state dict (or of a state dict's tensors)."""
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    return {name: tuple(value.shape) for name, value in state.items() if isinstance(value, Tensor)}


def run_identity(settings: Mapping[str, Any], data: Mapping[str, Any],
                 models: Mapping[str, nn.Module]) -> dict[str, Any]:
    """What defines a run, to record in its checkpoints: ``settings`` (plain values: the arguments that
    shape its trajectory), the fingerprint of each entry of ``data`` (a tensor, several, or None: their
    :func:`fingerprint`; samples read by index: their :func:`sample_fingerprint`) and the
    :func:`architecture` of each network in ``models`` (named as the checkpoint names their weights, so
    a checkpoint without an identity can still be checked)."""
    return {"version": IDENTITY_VERSION, "settings": dict(settings),
            "data": {name: _data_fingerprint(part) for name, part in data.items()},
            "models": {name: architecture(model) for name, model in models.items()}}


def check_resume(state: Mapping[str, Any], identity: Mapping[str, Any], where: str) -> None:
    """ValueError naming every difference between the run that wrote the checkpoint ``state`` (read from
    ``where``) and ``identity``, the resuming call's :func:`run_identity`. A checkpoint without an
    identity (written before they were recorded) is checked for what it holds, its networks' shapes and
    a ``"config"`` dict, with a warning that the rest cannot be."""
    saved = state.get(IDENTITY)
    if not isinstance(saved, Mapping):
        log.warning("%s was written before checkpoints recorded their run: its data and settings cannot be checked "
                    "(only its networks' shapes and the settings it holds); resuming it as it is", where)
        config = state.get("config") if isinstance(state.get("config"), Mapping) else {}
        saved = {"settings": {k: v for k, v in config.items() if k in identity["settings"]},
                 "models": {name: architecture(state[name]) for name in identity["models"]
                            if isinstance(state.get(name), Mapping)}}
        identity = {**identity, "settings": {k: v for k, v in identity["settings"].items() if k in config}}
    elif saved.get("version") != identity.get("version"):
        log.warning("%s records its data by fingerprints of version %s (now %s), which cannot be compared: "
                    "resuming without checking its data", where, saved.get("version"), identity.get("version"))
        saved = {k: v for k, v in saved.items() if k != "data"}
    problems = _differences(saved, identity)
    if problems:
        raise ValueError(f"cannot resume from {where}: " + "; ".join(problems) + ". Pass the same settings, data "
                         "and networks to continue that run, or start a new run in another folder")


def _differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """One phrase per kind of difference between two run identities (settings, each data entry, each network)."""
    problems = []
    before, after = saved.get("settings", {}), now.get("settings", {})
    changed = [f"{key}={_shown(before, key)}, now {_shown(after, key)}"
               for key in dict.fromkeys([*after, *before]) if before.get(key, _UNSET) != after.get(key, _UNSET)]
    if changed:
        problems.append(f"it was written with other settings ({'; '.join(changed)})")
    for name, old in saved.get("data", {}).items():
        new = now.get("data", {}).get(name)
        if new is not None and new != old:
            problems.append(f"{name} differ (fingerprint {old[:12]} then, {new[:12]} now)")
    for name, old in saved.get("models", {}).items():
        new = now.get("models", {}).get(name)
        if new is not None and dict(new) != dict(old):
            problems.append(f"the {name}'s architecture differs ({_shape_changes(old, new)})")
    return problems


def _shape_changes(old: Mapping[str, tuple[int, ...]], new: Mapping[str, tuple[int, ...]], shown: int = 2) -> str:
    """The first ``shown`` entries whose shapes differ between two architectures, and how many more."""
    changes = []
    for name in dict.fromkeys([*old, *new]):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            changes.append(f"{name} only {'now' if a is None else 'then'}")
        elif tuple(a) != tuple(b):
            changes.append(f"{name} {tuple(a)} then, {tuple(b)} now")
    more = f"; {len(changes) - shown} more" if len(changes) > shown else ""
    return "; ".join(changes[:shown]) + more


_UNSET = object()


def _shown(settings: Mapping[str, Any], key: str) -> str:
    return repr(settings[key]) if key in settings else "unset"


__all__ = ["CheckpointFolder", "architecture", "check_resume", "fingerprint", "new_run_id", "run_identity",
           "sample_fingerprint"]

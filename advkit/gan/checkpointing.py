"""A GAN run's checkpoints: its run record, starting or resuming a run in a folder, and writing the
trainer's state (:mod:`advkit.checkpoints`: one run per folder, atomic files, the newest three kept).

The run record is :func:`advkit.checkpoints.run_identity` of the options that shape the trajectory
(:meth:`advkit.gan.options.GANOptions.settings`), the data fed to D and the networks' shapes, plus
every option under ``"options"`` (:meth:`~advkit.gan.options.GANOptions.record`, not compared). In a
process group rank 0 reads and writes the files while the other ranks wait for it (and see its errors).
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from torch import nn

from ..checkpoints import CheckpointFolder, run_identity
from ..core import DivergenceGuard
from ..distributed import broadcast, gather_call, is_main
from .options import GANOptions


class Checkpointed(Protocol):
    """What checkpointing reads of a :class:`~advkit.gan.GANTrainer`: its options, networks, run id and
    step, and how to load a checkpoint's state."""

    options: GANOptions
    G: nn.Module
    D: nn.Module
    run_id: str
    step: int

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

log = logging.getLogger(__name__)

#: The file name prefix of the GAN trainer's checkpoints.
CHECKPOINT_PREFIX = "gan"


def run_record(trainer: Checkpointed, samples: Any, batch_size: int) -> dict[str, Any]:
    """What defines ``trainer``'s run, recorded in its checkpoints and compared on resume: its options'
    :meth:`~advkit.gan.options.GANOptions.settings`, the fingerprint of the samples and conditions ``fit``
    prepared (:func:`advkit.checkpoints.sample_fingerprint`) and the shapes of G's and D's weights; and, for
    the record, all of its options.

    Args:
        trainer: the trainer about to fit.
        samples: the samples D calls real and their conditions (:class:`advkit.data.Samples`).
        batch_size: the batch size ``fit`` was called with.
    """
    identity = run_identity(trainer.options.settings(batch_size), {"data": samples},
                            {"generator": trainer.G, "discriminator": trainer.D})
    return {**identity, "options": trainer.options.record()}


def start(trainer: Checkpointed, folder: CheckpointFolder | None, resume: bool) -> None:
    """Begin ``trainer``'s run in ``folder``: with ``resume``, load the newest valid checkpoint of the
    trainer's run there (or of the only run there), once it is a checkpoint of this run's settings, data
    and networks; otherwise claim the folder for the run (refused when it holds another run's files).

    Args:
        trainer: the trainer about to fit.
        folder: the run's checkpoint folder, or None (nothing to claim; ``resume`` needs a folder).
        resume: continue the run whose checkpoints are in ``folder``.
    """
    if resume:
        gather_call(lambda: _resume(trainer, folder) if is_main() else None)
    elif folder is not None:
        gather_call(lambda: folder.claim(trainer.run_id) if is_main() else None)


def checkpoint(trainer: Checkpointed, guard: DivergenceGuard, folder: CheckpointFolder | None) -> None:
    """The trainer's current state becomes the guard's last good one, and is written into ``folder``,
    unless a weight is non-finite.

    Args:
        trainer: the trainer whose state is kept.
        guard: the divergence guard of the ``fit`` under way.
        folder: the run's checkpoint folder, or None (the guard remembers the state all the same).
    """
    good = guard.remember(trainer.step)
    if good is not None and folder is not None:  # rank 0 writes, the others wait for it
        path = gather_call(lambda: folder.save(good, trainer.run_id, trainer.step) if is_main() else None)[0]
        log.info("checkpoint at step %d: %s", trainer.step, path)


def finish(trainer: Checkpointed, guard: DivergenceGuard, folder: CheckpointFolder | None) -> None:
    """The final :func:`checkpoint` of a ``fit``, unless the run's checkpoint of its last step exists.

    Args:
        trainer: the trainer that has played its rounds.
        guard: the divergence guard of that ``fit``.
        folder: the run's checkpoint folder, or None (nothing is written).
    """
    if folder is not None and broadcast(not folder.path_for(trainer.run_id, trainer.step).exists()):
        checkpoint(trainer, guard, folder)


def _resume(trainer: Checkpointed, folder: CheckpointFolder) -> None:
    _, state, path = folder.resume(trainer.run_id)
    trainer.load_state_dict(state)
    log.info("resumed run %s from %s at step %d", trainer.run_id, path, trainer.step)


__all__ = ["CHECKPOINT_PREFIX", "Checkpointed", "checkpoint", "finish", "run_record", "start"]

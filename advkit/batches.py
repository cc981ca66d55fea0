"""The one shuffled, resumable mini-batch stream of every training loop (plain training, GANs, defenses)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from .rng import epoch_seed


class BatchOrder:
    """Which samples each mini-batch takes: batches of ``min(batch_size, n)`` indices walking through a
    new permutation of the ``n`` samples each epoch, the last partial batch dropped; endless.

    Pass exactly one of:

    - ``seed``: epoch e's permutation is a pure function of ``(seed, e)`` (a fresh generator seeded
      :func:`advkit.rng.epoch_seed` of them), so the whole state is :attr:`drawn`, the number of batches
      drawn so far;
    - ``generator``: each permutation is drawn from ``generator`` when its epoch starts (the
      generator may also serve augmentation); the state holds the current permutation, and the
      generator's own state is the caller's to save and restore.

    Either way :meth:`load_state_dict` of a :meth:`state_dict` makes a fresh order continue exactly
    where the saved one stopped.
    """

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None):
        if (seed is None) == (generator is None):
            raise ValueError("BatchOrder takes exactly one of seed (permutations fixed by the seed and the epoch) "
                             "or generator (permutations drawn from it)")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
        self.seed, self.generator = seed, generator
        self.drawn = 0
        self._order: tuple[tuple[int, int], Tensor] | None = None  # ((epoch, n), that epoch's permutation)

    def next_batch(self, n: int, batch_size: int) -> Tensor:
        """The indices (into ``n`` samples) of the next batch."""
        size = min(batch_size, n)
        epoch, j = divmod(self.drawn, n // size)
        if self._order is None or self._order[0] != (epoch, n):
            self._order = ((epoch, n), self._permutation(n, epoch))
        self.drawn += 1
        return self._order[1][j * size:(j + 1) * size]

    def _permutation(self, n: int, epoch: int) -> Tensor:
        if self.generator is not None:
            return torch.randperm(n, generator=self.generator)
        return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch)))

    def state_dict(self) -> dict[str, Any]:
        """``{"drawn": int}``, plus the current epoch's permutation when it is drawn from a generator."""
        if self.generator is None or self._order is None:
            return {"drawn": self.drawn}
        (epoch, n), order = self._order
        return {"drawn": self.drawn, "epoch": epoch, "n": n, "order": order.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``, a :meth:`state_dict` of an order built the same way."""
        self.drawn = int(state["drawn"])
        if "order" in state:
            self._order = ((int(state["epoch"]), int(state["n"])), state["order"].clone())


def batch_stream(tensors: Sequence[Tensor], batch_size: int, order: BatchOrder,
                 device: torch.device) -> Iterator[tuple[Tensor, ...]]:
    """Endless mini-batches of ``tensors`` (equal lengths; one batch of each per step) in ``order``,
    moved to ``device``: gathered into pinned memory and copied asynchronously when that is a GPU, as
    DataLoader's pin_memory does. ``order`` is read at each step, so restoring its state moves the stream."""
    pin = device.type == "cuda"
    n = len(tensors[0])
    while True:
        idx = order.next_batch(n, batch_size)
        yield tuple((t[idx].pin_memory() if pin else t[idx]).to(device, non_blocking=pin) for t in tensors)


__all__ = ["BatchOrder", "batch_stream"]

"""The one shuffled, resumable mini-batch stream of every training loop (plain training, GANs, defenses)."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from .distributed import shard_bounds
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
        order, size, j = self._epoch(n, batch_size)
        self.drawn += 1
        return order[j * size:(j + 1) * size]

    def upcoming(self, n: int, batch_size: int) -> list[Tensor]:
        """The batches :meth:`next_batch` will return from now to the end of the current epoch, without
        drawing them (the state stays as it is, but for the epoch's permutation, drawn when ``next_batch``
        would draw it): what a stream may read ahead."""
        order, size, j = self._epoch(n, batch_size)
        return [order[k * size:(k + 1) * size] for k in range(j, n // size)]

    def _epoch(self, n: int, batch_size: int) -> tuple[Tensor, int, int]:
        """The current epoch's permutation (drawn when the epoch starts), the batch size and the number of
        the next batch in the epoch."""
        size = min(batch_size, n)
        epoch, j = divmod(self.drawn, n // size)
        if self._order is None or self._order[0] != (epoch, n):
            self._order = ((epoch, n), self._permutation(n, epoch))
        return self._order[1], size, j

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


class ShardedOrder:
    """``order``'s global batches, of which :meth:`next_batch` returns this rank's contiguous share
    (:func:`advkit.distributed.shard_bounds`; all of it without a group). :attr:`batch` is the last global
    batch's indices, :attr:`start` where the share begins in it.

    Args:
        order: the batch order, walked alike on every rank.
        rank: this process's rank.
        world: the number of ranks.
    """

    def __init__(self, order: BatchOrder, rank: int, world: int):
        self.order, self.rank, self.world = order, rank, world
        self.batch, self.start = torch.empty(0, dtype=torch.long), 0

    def next_batch(self, n: int, batch_size: int) -> Tensor:
        """This rank's indices of the next global batch.

        Args:
            n: the number of samples the order permutes.
            batch_size: the global batch size.
        """
        self.batch = self.order.next_batch(n, batch_size)
        self.start, stop = shard_bounds(len(self.batch), self.rank, self.world)
        return self.batch[self.start:stop]

    def upcoming(self, n: int, batch_size: int) -> list[Tensor]:
        """This rank's shares of the global batches :meth:`BatchOrder.upcoming` lists.

        Args:
            n: the number of samples the order permutes.
            batch_size: the global batch size.
        """
        batches = self.order.upcoming(n, batch_size)
        start, stop = shard_bounds(min(batch_size, n), self.rank, self.world)
        return [b[start:stop] for b in batches]

    @property
    def rows(self) -> tuple[int, int]:
        """``(start, total)``: where this rank's share begins in the last global batch, and its size."""
        return self.start, len(self.batch)


class Reader(Protocol):
    """Samples read by index (:class:`advkit.data.Samples`): their number, and the reads of batches of indices."""

    def __len__(self) -> int: ...

    def read_ahead(self, batches: Sequence[Tensor]) -> Iterator[tuple[Tensor, ...]]: ...


def batch_stream(data: Sequence[Tensor] | Reader, batch_size: int, order: BatchOrder | ShardedOrder,
                 device: torch.device) -> Iterator[tuple[Tensor, ...]]:
    """Endless mini-batches of ``data`` in ``order``, moved to ``device``: gathered into pinned memory and
    copied asynchronously when that is a GPU, as DataLoader's pin_memory does.

    ``data`` is a sequence of equal-length tensors (one batch of each per step), or a :class:`Reader`
    (:class:`advkit.data.Samples`), whose batches are ``(*read, index)`` (``index``: the positions read,
    on the CPU), read only when the stream reaches them: to the end of the epoch ahead of time by a
    DataLoader's workers (:meth:`BatchOrder.upcoming`), a few batches held. ``order`` is read at each step
    and holds the batches consumed, never those read ahead, so restoring its state moves the stream (what
    was read ahead for another position is dropped)."""
    if not isinstance(data, (tuple, list)):
        yield from _read_stream(data, batch_size, order, device)
        return
    n = len(data[0])
    while True:
        yield _to(device, order.next_batch(n, batch_size), data)


def _read_stream(data: Reader, batch_size: int, order: BatchOrder | ShardedOrder,
                 device: torch.device) -> Iterator[tuple[Tensor, ...]]:
    n, planned, ahead = len(data), deque(), iter(())
    while True:
        index = order.next_batch(n, batch_size)
        if planned and torch.equal(planned[0], index):
            planned.popleft()
        else:  # a new epoch, or the order was moved (restored): read from here to the epoch's end
            planned = deque(order.upcoming(n, batch_size))
            ahead = data.read_ahead([index, *planned])
        yield (*_to(device, slice(None), next(ahead)), index)


def _to(device: torch.device, index, tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """``t[index]`` of each tensor on ``device`` (from the CPU through pinned memory to a GPU)."""
    out = []
    for t in tensors:
        pin = device.type == "cuda" and t.device.type == "cpu"
        out.append((t[index].pin_memory() if pin else t[index]).to(device, non_blocking=pin))
    return tuple(out)


__all__ = ["BatchOrder", "Reader", "ShardedOrder", "batch_stream"]

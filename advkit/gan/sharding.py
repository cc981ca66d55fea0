"""How :class:`~advkit.gan.GANTrainer` splits its work among the ranks of a process group (torchrun).

Every rank walks the same batch order and takes its contiguous share of each global batch
(:class:`ShardedOrder`); the players' gradients come from ``backward`` so that DDP's hooks average
them over the ranks (:class:`advkit.core.BackwardPlayer`); and :func:`global_loss` gives each rank a loss whose
value is the global batch's (the same on every rank, so the history and the divergence guard agree)
and whose gradient, once DDP has averaged the ranks', is the global batch's even when the shares
differ in size. Without a group each piece is the single-process identity.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..batches import BatchOrder
from ..distributed import is_distributed, reduce_sum, shard_bounds, world_size


class ShardedOrder:
    """``order``'s global batches, of which :meth:`next_batch` returns this rank's share (all of it
    without a group). :attr:`batch` is the last global batch's indices, :attr:`start` where the share
    begins in it."""

    def __init__(self, order: BatchOrder, rank: int, world: int):
        self.order, self.rank, self.world = order, rank, world
        self.batch, self.start = torch.empty(0, dtype=torch.long), 0

    def next_batch(self, n: int, batch_size: int) -> Tensor:
        """This rank's indices of the next global batch (:func:`advkit.distributed.shard_bounds`)."""
        self.batch = self.order.next_batch(n, batch_size)
        self.start, stop = shard_bounds(len(self.batch), self.rank, self.world)
        return self.batch[self.start:stop]

    @property
    def rows(self) -> tuple[int, int]:
        """``(start, total)``: where this rank's share begins in the last global batch, and its size."""
        return self.start, len(self.batch)


def global_loss(local: Tensor, share: int, total: int, stats: Sequence[float] = (),
                plus: float = 0.0) -> tuple[Tensor, list[float]]:
    """``local``, a mean over this rank's ``share`` of a global batch of ``total``, as the loss to move on,
    and ``stats`` (other means over the share) as the global batch's means.

    In a group the returned loss has the value ``sum_r share_r / total * local_r + plus`` (``plus``: a
    term every rank already knows globally) on every rank, and a gradient that DDP's average over the
    ranks turns into the gradient of ``sum_r share_r / total * local_r``. Without a group: ``local``
    (plus ``plus``) and ``stats`` unchanged."""
    if not is_distributed():
        return local + plus if plus else local, list(stats)
    weight = share / total
    values = torch.tensor([float(local.detach()), *stats], dtype=torch.float64, device=local.device)
    sums = reduce_sum(values * weight).tolist()  # on the loss's device: NCCL takes no CPU tensors
    scaled = local * (weight * world_size())
    return (scaled - scaled.detach()) + (sums[0] + plus), sums[1:]


__all__ = ["ShardedOrder", "global_loss"]

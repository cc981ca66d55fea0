"""How :class:`~advkit.gan.GANTrainer` splits its work among the ranks of a process group (torchrun).

Every rank passes the same data and arguments to ``fit`` (checked: :func:`check_same_run`), continues
from rank 0's state (:func:`adopt_main_state`), walks the same batch order and takes its contiguous
share of each global batch (:class:`advkit.batches.ShardedOrder`); the players' gradients come from ``backward`` so
that DDP's hooks average them over the ranks (:class:`advkit.core.BackwardPlayer`); :func:`global_loss`
gives each rank a loss whose value is the global batch's (the same on every rank, so the history and
the divergence guard agree) and whose gradient, once DDP has averaged the ranks', is the global
batch's even when the shares differ in size; :func:`sharded_mode_seeking` does the same for the
mode-seeking term, whose pairs may lie on different ranks. Without a group each piece is the
single-process identity.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..batches import ShardedOrder
from ..checkpoints import sample_fingerprint
from ..core import Stateful
from ..distributed import (
    broadcast,
    gather,
    gather_shards,
    is_distributed,
    is_main,
    reduce_sum,
    world_size,
)


def check_same_run(samples: Any, steps: int, batch: int, every: int | None, resume: bool, seed: int) -> None:
    """In a process group: ValueError on every rank unless all ranks passed the same data (their sizes and
    :func:`~advkit.checkpoints.sample_fingerprint` compared) and arguments, or when the (global) batch has
    fewer samples than there are ranks.

    Args:
        samples: the samples D calls real and their conditions, as ``fit`` prepared them (read by index).
        steps: ``fit``'s ``steps``.
        batch: the global batch size (at most the number of samples).
        every: ``fit``'s ``checkpoint_every``.
        resume: ``fit``'s ``resume``.
        seed: the trainer's seed.
    """
    if not is_distributed():
        return
    mine = (len(samples), sample_fingerprint(samples), steps, batch, every, resume, seed)
    seen = gather(mine)
    if any(other != seen[0] for other in seen):
        ranks = "; ".join(f"rank {r}: {s[0]} samples, steps={s[2]}, batch_size={s[3]}, seed={s[6]}"
                          for r, s in enumerate(seen))
        raise ValueError(f"data: the ranks of the process group passed different data or arguments to fit "
                         f"({ranks}); give every rank the same data, without a DistributedSampler: fit splits "
                         f"each batch among the ranks itself")
    if batch < world_size():
        raise ValueError(f"batch_size: a batch of {batch} samples cannot be split among {world_size()} ranks; "
                         f"use batch_size >= {world_size()}")


def adopt_main_state(trainer: Stateful) -> None:
    """In a process group, every rank continues from rank 0's state (models, EMA, optimizers, RNGs,
    counters and run id), sent as one serialised checkpoint.

    Args:
        trainer: the trainer (its ``state_dict``/``load_state_dict``).
    """
    if not is_distributed():
        return
    buffer = io.BytesIO()
    if is_main():
        torch.save(trainer.state_dict(), buffer)
    payload = broadcast(buffer.getvalue())
    if not is_main():
        trainer.load_state_dict(torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True))


def global_loss(local: Tensor, share: int, total: int, stats: Sequence[float] = (),
                plus: float = 0.0) -> tuple[Tensor, list[float]]:
    """``local``, a mean over this rank's ``share`` of a global batch of ``total``, as the loss to move on,
    and ``stats`` (other means over the share) as the global batch's means.

    In a group the returned loss has the value ``sum_r share_r / total * local_r + plus`` (``plus``: a
    term every rank already knows globally) on every rank, and a gradient that DDP's average over the
    ranks turns into the gradient of ``sum_r share_r / total * local_r``. Without a group: ``local``
    (plus ``plus``) and ``stats`` unchanged.

    Args:
        local: this rank's loss, a mean over its share.
        share: the number of samples in this rank's share.
        total: the number of samples in the global batch.
        stats: other means over the share, returned as the global batch's.
        plus: a term every rank already knows globally, added to the value.
    """
    if not is_distributed():
        return local + plus if plus else local, list(stats)
    weight = share / total
    values = torch.tensor([float(local.detach()), *stats], dtype=torch.float64, device=local.device)
    sums = reduce_sum(values * weight).tolist()  # on the loss's device: NCCL takes no CPU tensors
    scaled = local * (weight * world_size())
    return (scaled - scaled.detach()) + (sums[0] + plus), sums[1:]


def sharded_mode_seeking(weight: float, fake: Tensor, noise: Tensor, share: slice,
                         half: int) -> tuple[float, Tensor]:
    """The mode-seeking term of a global batch whose pairs may lie on different ranks: its value
    ``weight / (ratio + 1e-5)`` (the same on every rank), and a zero-valued term whose gradient, summed
    over the ranks and divided by this rank's share of the batch, is that term's gradient.

    ratio = A / B with A = mean |f_i - f_j| over the pairs (i, j = i + half); each rank
    differentiates |f_k - f_partner| for its own rows k against the partner's gathered (detached)
    sample, which sums over the ranks to dA.

    Args:
        weight: the trainer's ``mode_seeking`` weight.
        fake: this rank's generated samples (rows ``share`` of the global batch).
        noise: the global batch's noise.
        share: this rank's rows of the global batch.
        half: half the global batch (the pairs are i and i + half).
    """
    everyone = gather_shards(fake, len(noise))
    spread = (noise[:half] - noise[half:2 * half]).abs().mean()
    ratio = float((everyone[:half] - everyone[half:2 * half]).abs().mean() / spread)
    rows = torch.arange(share.start, share.stop, device=fake.device)
    paired = rows < 2 * half
    partners = torch.where(rows < half, rows + half, rows - half)[paired]
    mine = (fake[paired] - everyone[partners]).abs().sum() / (half * fake[0].numel() * float(spread))
    slope = -weight / (ratio + 1e-5) ** 2
    scale = len(rows) / len(noise)  # global_loss scales this rank's loss by its share; undo that here
    return weight / (ratio + 1e-5), slope * (mine - mine.detach()) / scale


__all__ = ["ShardedOrder", "adopt_main_state", "check_same_run", "global_loss", "sharded_mode_seeking"]

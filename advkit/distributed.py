"""Sharding work over the processes of an initialised ``torch.distributed`` group (torchrun).

Without a process group every helper is the single-process identity: rank 0 of 1, one shard
holding everything, a gather that returns this process's value alone. With one, rank r of W
takes the contiguous slice :func:`shard_bounds` gives it (the first ``n % W`` ranks hold one
sample more; none is lost or repeated, none padded), and :func:`gather` brings every rank's
value back to every rank in rank order, so concatenating the slices restores the samples' order.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


def is_distributed() -> bool:
    """True inside an initialised process group (torchrun, one node or several)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes share the work (1 without a group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files (rank 0; the only one without a group)."""
    return rank() == 0


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous share of ``n`` samples among ``world_size``
    ranks: sizes differ by at most one (the first ``n % world_size`` ranks hold the extra one),
    the shares tile ``range(n)`` in rank order, and a rank beyond ``n`` gets an empty share."""
    if n < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_bounds needs n >= 0 and 0 <= rank < world_size; got n={n}, rank={rank}, "
                         f"world_size={world_size}")
    size, extra = divmod(n, world_size)
    start = rank * size + min(rank, extra)
    return start, start + size + (rank < extra)


@contextmanager
def group_from_environment() -> Iterator[None]:
    """Join, for the block, the process group that torchrun describes in the environment (``WORLD_SIZE``
    above 1, ``MASTER_ADDR``, ``RANK``, ...): gloo for CPU tensors, and NCCL for CUDA ones with this
    process on GPU ``LOCAL_RANK`` where CUDA is available; the group is left at the end. Nothing
    happens outside torchrun, or when the caller has made a group already (it stays the caller's)."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend)
    try:
        yield
        dist.barrier()  # leave together: a rank that tears the group down early aborts another's last exchange
    finally:
        dist.destroy_process_group()


def my_shard(n: int) -> tuple[int, int]:
    """This process's ``(start, stop)`` among ``n`` samples (``(0, n)`` without a group)."""
    return shard_bounds(n, rank(), world_size())


def gather(value: T) -> list[T]:
    """Every rank's ``value`` (any picklable object, tensors included), in rank order, on every
    rank; ``[value]`` without a group. Every rank must call it, in the same order."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def gather_call(fn: Callable[[], T]) -> list[T]:
    """Run ``fn`` here and :func:`gather` its results; if it raised on any rank, every rank raises
    the lowest such rank's exception (so no rank waits forever on one that failed). An exception
    that cannot be pickled travels as a ``RuntimeError`` with its text."""
    try:
        mine: tuple[bool, Any] = (True, fn())
    except Exception as err:  # noqa: BLE001 - re-raised below, on every rank
        mine = (False, err if _picklable(err) else RuntimeError(f"rank {rank()}: {type(err).__name__}: {err}"))
        if not is_distributed():
            raise
    results = gather(mine)
    for ok, value in results:
        if not ok:
            raise value
    return [value for _, value in results]


def broadcast(value: T, src: int = 0) -> T:
    """Rank ``src``'s ``value`` (any picklable object) on every rank; ``value`` itself without a group.
    Every rank must call it, in the same order."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here (nothing without a group)."""
    if is_distributed():
        dist.barrier()


def data_parallel(model: nn.Module, **options: Any) -> nn.Module:
    """``model`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` inside a process group
    (on its CUDA device when its weights are on one; ``options`` go to DDP), else ``model`` itself.
    The wrapper shares the model's parameters: train through it, keep attacks and checkpoints on ``model``."""
    if not is_distributed():
        return model
    device = next(model.parameters()).device
    ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, **options)


def gather_rows(part: Tensor) -> Tensor:
    """The ranks' ``part`` tensors (their shards' rows) concatenated in rank order, on the CPU:
    the whole tensor in the samples' order when each rank holds its :func:`my_shard` rows."""
    parts = gather(part.cpu())
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def check_same_data(x: Tensor, y: Tensor, who: str, count: int | None = None) -> None:
    """In a process group every rank must pass the same samples in the same order, which ``who``
    splits among the ranks itself: ValueError on every rank otherwise (sizes, labels and pixel sum
    compared). ``count``: the number of samples when ``x, y`` are only a few of them (a fingerprint of
    streamed data). Nothing without a group."""
    if not is_distributed():
        return
    mine = ((len(x) if count is None else count, *x.shape[1:]),
            hashlib.sha256(y.cpu().numpy().tobytes()).hexdigest(), float(x.sum(dtype=torch.float64)))
    seen = gather(mine)
    if any(other != seen[0] for other in seen):
        sizes = ", ".join(f"rank {r}: {shape[0]}" for r, (shape, _, _) in enumerate(seen))
        raise ValueError(f"data: the ranks of the process group passed different samples ({sizes} samples); "
                         f"give every rank the same data in the same order, without a DistributedSampler: "
                         f"{who} splits the samples among the ranks itself")


def _picklable(obj: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:  # noqa: BLE001 - any failure means: send its text instead
        return False
    return True


def reduce_sum(values: Tensor) -> Tensor:
    """The element-wise sum of every rank's ``values`` (a new tensor, on ``values``' device); ``values``
    itself without a group. Every rank must call it, in the same order."""
    if not is_distributed():
        return values
    total = values.clone()
    dist.all_reduce(total)
    return total


def gather_shards(part: Tensor, total: int) -> Tensor:
    """The rows of ``total`` that the ranks hold, each its :func:`my_shard` ``part``, concatenated in
    rank order on ``part``'s device, detached (one ``all_gather`` padded to the largest share, no
    pickling, unlike :func:`gather_rows`); ``part`` itself without a group."""
    if not is_distributed():
        return part
    bounds = [shard_bounds(total, r, world_size()) for r in range(world_size())]
    largest = max(stop - start for start, stop in bounds)
    padded = part.new_zeros((largest, *part.shape[1:]))
    padded[:len(part)] = part.detach()
    parts = [torch.empty_like(padded) for _ in bounds]
    dist.all_gather(parts, padded)
    return torch.cat([p[:stop - start] for p, (start, stop) in zip(parts, bounds, strict=True)])


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers of ``module`` (BatchNorm statistics, spectral-norm vectors) into every
    rank's, as DDP does before a forward; nothing without a group."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)

"""Batched attack and prediction passes shared by the curves and the sanity checks."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..acceleration import autocast
from ..attacks.contract import AttackLike
from ..core import frozen
from ..data import Samples
from ..rng import batch_seed, sample_seeds
from ..validation import check_images, check_labels, fits_model
from .results import Cost

T = TypeVar("T")
log = logging.getLogger(__name__)


class BatchSize:
    """How many rows go in one batch: ``start``, or, when ``adaptive``, the largest size that fits:
    a batch that runs out of CUDA memory is halved and run again (down to one row), and the
    smaller size is kept for the batches after it. Rows are never lost or repeated."""

    def __init__(self, start: int, adaptive: bool = False):
        self.start = self.now = int(start)
        self.adaptive = adaptive

    def map(self, n: int, fn: Callable[[slice], T]) -> list[T]:
        """``fn`` on consecutive slices that tile ``range(n)`` in order, and its results."""
        out, first = [], 0
        while first < n:
            rows = slice(first, min(n, first + self.now))
            try:
                out.append(fn(rows))
            except torch.OutOfMemoryError:
                if not self.adaptive or rows.stop - rows.start == 1:
                    raise
                failed = rows.stop - rows.start  # the handler ends here, so the failed batch's tensors are freed
            else:
                first = rows.stop
                continue
            self.now = failed // 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.info("out of memory with %d rows per batch: trying %d", failed, self.now)
        return out


def batch_sizes(size: int | BatchSize) -> BatchSize:
    """``size`` as a :class:`BatchSize` (an int is a fixed size)."""
    return size if isinstance(size, BatchSize) else BatchSize(size)


def attack_at(attack: AttackLike, x: Tensor, y: Tensor, todo: Tensor, eps: float, batch_size: int | BatchSize,
              device: torch.device, seed: int, j: int = 0, starts: Tensor | None = None,
              model: nn.Module | None = None, index: Tensor | None = None) -> tuple[Tensor, Tensor, Cost]:
    """Attack rows ``todo`` of ``x`` at ``eps`` (the ``j``-th point of a grid) in batches, each row
    from its row of ``starts`` when given (a warm start). Returns, in ``todo``'s order, which rows
    were fooled and where each ended (on the CPU), and what it cost. With ``model``, the fooled
    rows' adversarial inputs are forwarded once more to count non-finite logits (``Cost.nonfinite``:
    a NaN output is counted as fooled, so the checks must see it). ``index``: the numbers of x's rows
    in the whole data, which seed them (:func:`advkit.rng.sample_seeds`; default: row i is sample i)."""
    fooled, ends = [], []
    cost = Cost(attacked=len(todo))
    t0 = time.perf_counter()

    def one_batch(rows: slice) -> None:
        idx = todo[rows]
        warm = {} if starts is None else {"x_init": starts[idx].to(device)}
        seeds = sample_seeds(batch_seed(seed, j), idx if index is None else index[idx])  # the same start with or
        # without the others
        res = attack.run(x[idx].to(device), y[idx].to(device), eps=eps, seed=seeds, **warm)
        nonfinite = count_nonfinite(model, res.x_adv[res.success].detach()) if model is not None and bool(
            res.success.any()) else 0
        fooled.append(res.success.cpu())
        ends.append(res.x_adv.detach().cpu())
        cost.forwards, cost.backwards = cost.forwards + res.forwards, cost.backwards + res.backwards
        cost.nonfinite += nonfinite

    batch_sizes(batch_size).map(len(todo), one_batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cost.seconds = time.perf_counter() - t0
    if not fooled:
        return torch.zeros(0, dtype=torch.bool), x[:0].clone(), cost
    return torch.cat(fooled), torch.cat(ends), cost


class Reader:
    """The samples of ``data`` as an evaluation uses them, read by index (``reader(index)``) or
    prepared after a batched read (:meth:`prepare`): images checked (finite, in [0, 1]) and cast to
    ``dtype`` (the model's), labels checked as integer class indices."""

    def __init__(self, data: Samples, dtype: torch.dtype = torch.float32):
        self.data, self.dtype = data, dtype

    def prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Images and labels as read, checked and cast."""
        x = check_images(x, "data images").to(self.dtype)
        return x, check_labels(y, len(x), torch.device("cpu"), "data labels")

    def __call__(self, index: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """The samples at ``index`` (a non-empty list of positions), prepared."""
        return self.prepare(*self.data.read(index))


@torch.no_grad()
def count_nonfinite(model: nn.Module, x: Tensor) -> int:
    """How many rows of ``x`` the model gives a NaN or Inf logit on."""
    with frozen(model):
        return int((~torch.isfinite(model(x).float()).all(1)).sum())


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int | BatchSize, device: torch.device, first: int = 0,
            amp: bool = False) -> tuple[Tensor, int]:
    """The model's clean predictions (on the CPU) and its number of classes. Logits of the wrong
    shape, or NaN/Inf logits on a clean sample, are an error (no accuracy can be measured); it names
    the sample by its index plus ``first`` (x's first row in the whole data). ``amp``: forwards under
    bf16 autocast on CUDA (:func:`advkit.acceleration.autocast`)."""
    with frozen(model), autocast(device, amp), fits_model(x, "data images"):
        logits = batch_sizes(batch_size).map(len(x), lambda rows: model(x[rows].to(device)))
    if not isinstance(logits[0], Tensor) or logits[0].ndim != 2 or logits[0].shape[1] < 2:
        shape = tuple(logits[0].shape) if isinstance(logits[0], Tensor) else type(logits[0]).__name__
        raise TypeError(f"model must return logits of shape (N, num_classes >= 2); got {shape}")
    logits = torch.cat(logits).float()
    bad = (~torch.isfinite(logits).all(1)).nonzero().squeeze(1)
    if len(bad):
        raise ValueError(f"model returned NaN or Inf logits on {len(bad)} of {len(x)} clean samples (first: index "
                         f"{first + int(bad[0])}); fix the model or leave those samples out")
    return logits.argmax(1).cpu(), logits.shape[1]



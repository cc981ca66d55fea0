"""Data read a batch at a time: tensors, a Dataset or a DataLoader behind one random-access view.

Every entry point that walks data (evaluate, the attacks' ``generate``, the training loops) reads it
through :class:`Samples`, so a data set larger than memory is held a few batches at a time: the first
``limit`` samples are chosen before anything is read, and a read returns only the samples it names.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from ..core.numbers import check_number

__all__ = ["Samples"]


class Samples:
    """The first ``limit`` samples (all when None) of ``data``, read by index.

    ``data`` is an ``(x, y)`` pair of tensors or numpy arrays, a map-style Dataset of ``(image, label)``
    items, or a DataLoader over one (its dataset is read by index in the data's own order, with the
    loader's ``collate_fn``, ``num_workers`` and ``pin_memory``; its sampler and batch size are not
    used, so a shuffling loader is read in order). Reads return images and labels as the data holds
    them, on the CPU; the caller checks their values (:func:`advkit.validation.check_images`).
    """

    def __init__(self, data, limit: int | None = None):
        if limit is not None:
            check_number(limit, "limit (the number of samples)", low=1, low_open=False, integer=True)
        self._tensors: tuple[Tensor, Tensor] | None = None
        self._loader: DataLoader | None = None
        self.dataset: Dataset | None = None
        if isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = (_from_numpy(t) for t in data)
            if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
                raise TypeError("data as a pair must be (images, labels) tensors or numpy arrays; got "
                                f"({type(x).__name__}, {type(y).__name__})")
            if len(x) != len(y):
                raise ValueError(f"data images and labels differ in number: {len(x)} images, {len(y)} labels")
            self._tensors = (x, y)
        elif isinstance(data, TensorDataset):
            self._tensors = (data.tensors[0], data.tensors[1])
        elif isinstance(data, DataLoader):
            self._loader, self.dataset = data, data.dataset
        elif isinstance(data, Dataset):
            self.dataset = data
        else:
            raise TypeError(f"data must be a Dataset, a DataLoader or an (x, y) pair of tensors; got "
                            f"{type(data).__name__}")
        if isinstance(self.dataset, IterableDataset):
            raise TypeError("data: an IterableDataset cannot be read by index; wrap its samples in a map-style "
                            "Dataset (one with __len__ and __getitem__)")
        total = len(self._tensors[0]) if self._tensors is not None else len(self.dataset)  # type: ignore[arg-type]
        self.n = total if limit is None else min(limit, total)
        if self.n == 0:
            raise ValueError("data holds no samples")

    def __len__(self) -> int:
        return self.n

    @property
    def in_memory(self) -> bool:
        """Whether the samples are tensors already (reading them copies nothing from a file)."""
        return self._tensors is not None

    def read(self, index: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """The images and labels of the samples at ``index`` (positions in ``[0, len)``), in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= self.n):
            raise IndexError(f"sample index out of range [0, {self.n}): {index.tolist()[:5]}")
        if self._tensors is not None:
            x, y = self._tensors
            return x[index], y[index]
        return self._collate([self.dataset[int(i)] for i in index], int(index[0]) if len(index) else 0)  # type: ignore[index]

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """``(first, x, y)`` for consecutive batches of up to ``batch_size`` samples of ``[start, stop)``
        (default: all), in order; a Dataset is read ahead by the DataLoader's workers when it has some."""
        check_number(batch_size, "batch_size", low=1, low_open=False, integer=True)
        stop = self.n if stop is None else stop
        bounds = [(b, min(b + batch_size, stop)) for b in range(start, stop, batch_size)]
        if self._tensors is not None or self._workers() == 0:
            for b, e in bounds:
                yield (b, *self.read(torch.arange(b, e)))
            return
        loader = self.loader([list(range(b, e)) for b, e in bounds])
        for (b, _), batch in zip(bounds, loader, strict=True):
            yield (b, *_pair(batch, b, "batch starting at sample"))

    def loader(self, batch_sampler) -> DataLoader:
        """A DataLoader over the (map-style) dataset that yields the batches of indices ``batch_sampler``
        gives, with the user's loader's collate_fn, workers and pinning when a DataLoader was passed."""
        if self.dataset is None:
            raise TypeError("Samples.loader reads a Dataset; these samples are tensors: index them with read")
        keep = {}
        if self._loader is not None:
            keep = {"collate_fn": self._loader.collate_fn, "num_workers": self._loader.num_workers,
                    "pin_memory": self._loader.pin_memory}
        return DataLoader(self.dataset, batch_sampler=batch_sampler, **keep)

    def _workers(self) -> int:
        return self._loader.num_workers if self._loader is not None else 0

    def _collate(self, items: list, first: int) -> tuple[Tensor, Tensor]:
        if self._loader is not None:
            return _pair(self._loader.collate_fn(items), first, "batch starting at sample")
        pairs = [_pair(item, first + k, "item") for k, item in enumerate(items)]
        return _stack(tuple(p[0] for p in pairs), "images"), _stack(tuple(p[1] for p in pairs), "labels")


def _from_numpy(value):
    """A numpy array or number as a tensor (floats as float32); anything else as it is."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = np.asarray(value)
        if value.dtype.kind == "f":
            value = value.astype(np.float32, copy=False)
        return torch.from_numpy(value if value.flags.c_contiguous else value.copy())
    return value


def _pair(item, index: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dataset's item (or a DataLoader's batch) ``(x, y)`` as two tensors, or a TypeError that says
    what to pass."""
    if isinstance(item, Mapping):
        keys = ", ".join(map(repr, list(item)[:6]))
        raise TypeError(f"data must yield (image, label) pairs; {what} {index} is a dict with keys {keys}: wrap "
                        "the dataset so that it returns pairs, e.g. a Dataset whose __getitem__ returns "
                        "(d['image'], d['label'])")
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        got = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
        raise TypeError(f"data must yield (image, label) pairs; {what} {index} is {got}")
    x, y = (_from_numpy(v) for v in item)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"data {what} {index}: the image must be a tensor or a numpy array, got {type(x).__name__}")
    if isinstance(y, numbers.Number):
        y = torch.as_tensor(y)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"data {what} {index}: the label must be a number, a tensor or a numpy array, got "
                        f"{type(y).__name__}")
    return x, y


def _stack(values: tuple[torch.Tensor, ...], what: str) -> torch.Tensor:
    """One tensor of the items' ``what``, or a ValueError naming the first item whose shape differs."""
    for i, v in enumerate(values):
        if v.shape != values[0].shape:
            raise ValueError(f"data items' {what} differ in shape: item 0 has {tuple(values[0].shape)}, item {i} "
                             f"{tuple(v.shape)}")
    return torch.stack(values)

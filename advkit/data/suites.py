"""The standard corruption suites, and advkit's own corruptions, behind one interface for ``evaluate``.

A :class:`CorruptionSuite` names its corruptions and corrupts a batch at a severity 1..5 with
:meth:`~CorruptionSuite.apply`, given the batch's seed and the samples' indices in the data:

- :class:`OwnCorruptions`: advkit's eight (:data:`advkit.data.corruptions.CORRUPTIONS`), computed on the
  batch's device (what ``evaluate(..., corruptions=True)`` measures).
- :class:`ImageNetC`: the 15 ImageNet-C corruptions of Hendrycks & Dietterich (ICLR 2019), computed image by
  image on the CPU by the reference implementation, the ``imagecorruptions`` package (:func:`imagenet_c`;
  optional extra ``advkit[corruptions]``, which installs its maintained ``imagecorruptions-imaug`` release:
  the original 1.1.2 cannot be imported with numpy 2 or setuptools >= 81). ``"imagenet-c"`` names it.
- :class:`CorruptionFiles`: CIFAR-10-C or CIFAR-100-C read from their ``.npy`` files under a root,
  memory-mapped and index-aligned with the clean test set.

The corruption error of Hendrycks & Dietterich is :func:`corruption_errors`; a suite may carry the
errors of a reference model (:class:`ErrorTable`, e.g. :data:`ALEXNET_IMAGENET_C`) for it.
"""
from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..validation import check_images
from .corruptions import CORRUPTIONS, SEVERITIES, corrupt

__all__ = ["ALEXNET_IMAGENET_C", "IMAGENET_C", "IMAGENET_C_EXTRA", "CorruptionFiles", "CorruptionSuite",
           "ErrorTable", "ImageNetC", "OwnCorruptions", "Selection", "corruption_errors", "imagenet_c",
           "mean_corruption_error", "suite_of"]

#: The 15 ImageNet-C corruptions, in the benchmark's order (noise, blur, weather, digital).
IMAGENET_C = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
              "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
              "jpeg_compression")
#: The four held-out corruptions that CIFAR-10-C and imagecorruptions also provide (not in mCE).
IMAGENET_C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
#: The smallest image side the ImageNet-C corruptions accept (the reference code refuses smaller images).
MIN_SIDE = 32
#: The folder of each files suite under its root, as the official archives unpack.
FOLDERS = {"cifar10-c": "CIFAR-10-C", "cifar100-c": "CIFAR-100-C"}


@dataclass(frozen=True)
class ErrorTable:
    """A reference model's top-1 error under each corruption, the denominator of the corruption error:
    per corruption either the mean error over severities 1..5 (a number) or one error per severity.

    Args:
        name: the reference model, as the report names it.
        errors: corruption name -> its mean error over the severities, or the five errors.
    """

    name: str
    errors: Mapping[str, float | Sequence[float]]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"ErrorTable: name must be a non-empty string, got {self.name!r}")
        table = {}
        for corruption, value in dict(self.errors).items():
            values = [value] if isinstance(value, (int, float)) else list(value)
            if len(values) not in (1, len(SEVERITIES)) or not all(0 <= float(v) <= 1 for v in values):
                raise ValueError(f"ErrorTable {self.name!r}: the errors of {corruption!r} must be one mean error or "
                                 f"{len(SEVERITIES)} (one per severity), each in [0, 1]; got {value!r}")
            table[corruption] = tuple(float(v) for v in values)
        object.__setattr__(self, "errors", table)

    def total(self, corruption: str, severities: int) -> float:
        """The sum over ``severities`` severities of the error under ``corruption`` (a mean counts that many times)."""
        values = self.errors[corruption]
        return values[0] * severities if len(values) == 1 else sum(values[:severities])


#: AlexNet's ImageNet-C top-1 errors, the mean over severities 1..5 of each corruption: the denominators of the
#: mCE that papers report (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
#: and Perturbations", ICLR 2019). Numbers as published with the official ImageNet-C evaluation
#: (hendrycks/robustness) and used by AugMix's ``imagenet.py`` (google-research/augmix, ``ALEXNET_ERR``).
ALEXNET_IMAGENET_C = ErrorTable("AlexNet", dict(zip(IMAGENET_C, (
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572, 0.819324, 0.564592,
    0.853204, 0.646056, 0.717840, 0.606500), strict=True)))


def corruption_errors(errors: Mapping[str, Sequence[float]], baseline: ErrorTable | Mapping[str, Sequence[float]]
                      ) -> dict[str, float | None]:
    """Hendrycks & Dietterich's corruption error of each corruption of ``errors``:
    ``CE_c = sum_s E(f, c, s) / sum_s E(base, c, s)`` over the severities s evaluated.

    Args:
        errors: corruption -> the model's top-1 error at each severity (1, 2, ...).
        baseline: the reference model's errors: an :class:`ErrorTable`, or corruption -> its errors at
            the same severities.

    Returns:
        corruption -> CE (None where the baseline makes no error, or has no entry for the corruption).
    """
    out: dict[str, float | None] = {}
    for name, own in errors.items():
        if isinstance(baseline, ErrorTable):
            base = baseline.total(name, len(own)) if name in baseline.errors else None
        else:
            base = float(sum(baseline[name])) if name in baseline else None
        out[name] = float(sum(own)) / base if base else None
    return out


def mean_corruption_error(ces: Mapping[str, float | None]) -> float | None:
    """mCE: the mean of the corruption errors (None when one of them is undefined or there are none)."""
    values = list(ces.values())
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


class CorruptionSuite:
    """A set of named corruptions at severities 1..5 that ``evaluate`` measures accuracy under.

    ``name``: the suite's name in the report; ``corruptions``: its corruptions' names, in order;
    ``baseline``: a reference model's errors (:class:`ErrorTable`) the report's corruption errors divide by,
    or None. A subclass implements :meth:`apply`.
    """

    name: str = ""
    corruptions: tuple[str, ...] = ()
    baseline: ErrorTable | None = None

    def apply(self, x: Tensor, name: str, severity: int, *, seed: int, index: Tensor) -> Tensor:
        """Batch ``x`` (NCHW, float, [0, 1]) under corruption ``name`` at ``severity``, same shape, dtype and
        device. ``seed``: the batch's seed; ``index``: the samples' indices in the evaluated data."""
        raise NotImplementedError

    def check_labels(self, y: Tensor, index: Tensor) -> None:
        """Raise ValueError when labels ``y`` of samples ``index`` cannot be the suite's (only files have labels)."""

    def check_data(self, x: Tensor, y: Tensor) -> None:
        """Raise ValueError, before any work, when the suite cannot corrupt the data ``(x, y)`` (its first
        ``len(x)`` samples): images it cannot take, or labels that differ from its files'."""

    def check_names(self, names: Sequence[str]) -> tuple[str, ...]:
        """``names`` (repeats dropped), each one of :attr:`corruptions` (ValueError otherwise)."""
        for name in names:
            if name not in self.corruptions:
                raise ValueError(f"corruptions: {self.name} has no corruption {name!r}; choose from "
                                 f"{', '.join(self.corruptions)}")
        return tuple(dict.fromkeys(names))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.corruptions)} corruptions)"


class OwnCorruptions(CorruptionSuite):
    """advkit's own corruptions (:func:`advkit.data.corruptions.corrupt`), on the batch's device.

    Args:
        corruptions: names of :data:`~advkit.data.corruptions.CORRUPTIONS` (None: all eight).
    """

    name = "advkit"

    def __init__(self, corruptions: Sequence[str] | None = None):
        self.corruptions = tuple(CORRUPTIONS)  # what check_names accepts
        if corruptions is not None:
            self.corruptions = self.check_names(corruptions)

    def apply(self, x: Tensor, name: str, severity: int, *, seed: int, index: Tensor) -> Tensor:
        return corrupt(x, name, severity, seed=seed)


class ImageNetC(CorruptionSuite):
    """ImageNet-C's corruptions computed on the fly by the ``imagecorruptions`` package (:func:`imagenet_c`).

    Args:
        corruptions: names of :data:`IMAGENET_C` or :data:`IMAGENET_C_EXTRA` (None: the 15 of IMAGENET_C).
        baseline: the errors the corruption errors divide by: an :class:`ErrorTable`, ``"alexnet"``
            (:data:`ALEXNET_IMAGENET_C`, meaningful on ImageNet's validation images only) or None.
    """

    name = "imagenet-c"

    def __init__(self, corruptions: Sequence[str] | None = None, baseline: ErrorTable | str | None = None):
        self.corruptions = IMAGENET_C + IMAGENET_C_EXTRA
        self.corruptions = self.check_names(IMAGENET_C if corruptions is None else corruptions)
        self.baseline = _baseline(baseline)
        _package()  # a missing package is an error now, before evaluate reads data or runs a model

    def apply(self, x: Tensor, name: str, severity: int, *, seed: int, index: Tensor) -> Tensor:
        return imagenet_c(x, name, severity, seed=seed)

    def check_data(self, x: Tensor, y: Tensor) -> None:
        _check_shape(x)


class CorruptionFiles(CorruptionSuite):
    """CIFAR-10-C or CIFAR-100-C from its ``.npy`` files: ``<root>/CIFAR-10-C/<corruption>.npy`` (uint8
    NHWC, the five severities stacked: 50,000 images for the 10,000 test images) and ``labels.npy``.

    The files are memory-mapped (a batch reads only its rows) and index-aligned with the clean test
    set: sample i of the data under (corruption, severity) is row ``(severity - 1) * n + i``, with
    ``n`` the rows per severity (a fifth of the file). So the data evaluated must be the clean test set
    in its order (``evaluate``'s ``n`` keeps its first samples); :meth:`check_labels` refuses a batch
    whose labels differ from ``labels.npy``'s. Files are opened when first used, with
    ``allow_pickle=False`` (a file holds numbers, never code to run).

    Args:
        dataset: ``"cifar10-c"`` or ``"cifar100-c"``.
        root: the folder that holds ``CIFAR-10-C/`` (or ``CIFAR-100-C/``).
        corruptions: names of :data:`IMAGENET_C` or :data:`IMAGENET_C_EXTRA` (None: the 15 of IMAGENET_C).
        baseline: an :class:`ErrorTable` the corruption errors divide by, or None.
    """

    def __init__(self, dataset: str, root: str | Path, corruptions: Sequence[str] | None = None,
                 baseline: ErrorTable | None = None):
        if dataset not in FOLDERS:
            raise ValueError(f"dataset must be one of {', '.join(FOLDERS)}; got {dataset!r}")
        self.name, self.folder = dataset, Path(root) / FOLDERS[dataset]
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{dataset}: no folder {self.folder}; unpack the official {FOLDERS[dataset]}.tar "
                                    f"under root={str(root)!r}")
        self.corruptions = IMAGENET_C + IMAGENET_C_EXTRA
        self.corruptions = self.check_names(IMAGENET_C if corruptions is None else corruptions)
        missing = [c for c in (*self.corruptions, "labels") if not (self.folder / f"{c}.npy").is_file()]
        if missing:
            raise FileNotFoundError(f"{dataset}: missing {', '.join(f'{m}.npy' for m in missing)} in {self.folder}")
        self.baseline = _baseline(baseline)
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str) -> np.ndarray:
        """The memory-mapped array of ``name`` (a corruption or ``"labels"``), checked once."""
        if name not in self._arrays:
            path = self.folder / f"{name}.npy"
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            rows = len(self.array("labels")) if name != "labels" else len(array)
            if name == "labels":
                if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer) or rows % len(SEVERITIES):
                    raise ValueError(f"{path}: labels must be integers, one per row, {len(SEVERITIES)} severities "
                                     f"of equal size; got dtype {array.dtype}, shape {array.shape}")
            elif array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] not in (1, 3) or len(array) != rows:
                raise ValueError(f"{path}: expected uint8 images (N, H, W, C) with N = {rows} (labels.npy's length); "
                                 f"got dtype {array.dtype}, shape {array.shape}")
            self._arrays[name] = array
        return self._arrays[name]

    @property
    def per_severity(self) -> int:
        """Rows per severity: the size of the clean test set the files align with."""
        return len(self.array("labels")) // len(SEVERITIES)

    def rows(self, severity: int, index: Tensor) -> np.ndarray:
        """The files' rows of samples ``index`` at ``severity``."""
        index = index.cpu().numpy().astype(np.int64)
        n = self.per_severity
        if len(index) and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"{self.name} holds {n} images per severity; sample {int(index.max())} has none: "
                             f"evaluate at most the first {n} samples of the clean test set")
        return (severity - 1) * n + index

    def apply(self, x: Tensor, name: str, severity: int, *, seed: int, index: Tensor) -> Tensor:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(map(str, SEVERITIES))}; got {severity!r}")
        images = torch.from_numpy(np.ascontiguousarray(self.array(name)[self.rows(severity, index)]))
        out = images.permute(0, 3, 1, 2).to(x.dtype).div_(255)
        if out.shape != x.shape:
            raise ValueError(f"{self.name}'s {name} images have shape {tuple(out.shape[1:])}; the data's "
                             f"{tuple(x.shape[1:])}: evaluate the clean test set it was made from")
        return out.to(x.device)

    def check_labels(self, y: Tensor, index: Tensor) -> None:
        labels = torch.from_numpy(np.asarray(self.array("labels")[self.rows(1, index)]).astype(np.int64))
        wrong = (labels != y.cpu()).nonzero().squeeze(1)
        if len(wrong):
            i = int(wrong[0])
            raise ValueError(f"data labels differ from {self.name}'s labels.npy: sample {int(index[i])} is labelled "
                             f"{int(y[i])} in the data, {int(labels[i])} in the files. The files align with the clean "
                             "test set in its order: evaluate that set, unshuffled")

    def check_data(self, x: Tensor, y: Tensor) -> None:
        shape = self.array(self.corruptions[0]).shape[1:]
        if tuple(x.shape[1:]) != (shape[2], shape[0], shape[1]):
            raise ValueError(f"{self.name}'s images have shape {(shape[2], shape[0], shape[1])}; the data's "
                             f"{tuple(x.shape[1:])}: evaluate the clean test set the files were made from")
        self.check_labels(y, torch.arange(len(y)))

    def __repr__(self) -> str:
        return f"CorruptionFiles({self.name!r}, {str(self.folder.parent)!r}, {len(self.corruptions)} corruptions)"


def _baseline(value: ErrorTable | str | None) -> ErrorTable | None:
    if value is None or isinstance(value, ErrorTable):
        return value
    if value == "alexnet":
        return ALEXNET_IMAGENET_C
    raise ValueError(f"baseline must be an ErrorTable, 'alexnet' or None; got {value!r}")


class Selection(tuple):
    """The names of the corruptions evaluated, a tuple that knows the :class:`CorruptionSuite` they belong to
    (``suite``): what ``evaluate``'s options keep, so that a copy of the options keeps the suite."""

    suite: CorruptionSuite

    def __new__(cls, names: Sequence[str], suite: CorruptionSuite) -> Selection:
        selection = super().__new__(cls, names)
        selection.suite = suite
        return selection

    def __getnewargs__(self) -> tuple:
        return tuple(self), self.suite


def suite_of(value: object) -> CorruptionSuite | None:
    """The suite a ``corruptions`` value selects: a :class:`CorruptionSuite` itself, a :class:`Selection`'s,
    ``"imagenet-c"`` (:class:`ImageNetC`, its 15 corruptions); None for anything else (advkit's own names,
    True, False)."""
    if isinstance(value, Selection):
        return value.suite
    if isinstance(value, CorruptionSuite):
        return value
    if value == "imagenet-c":
        return ImageNetC()
    if isinstance(value, str) and value in FOLDERS:
        raise ValueError(f"corruptions={value!r} reads files: pass advkit.data.CorruptionFiles({value!r}, root)")
    return None


def imagenet_c(x: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """``x`` (NCHW, float, [0, 1]) under ImageNet-C corruption ``name`` at ``severity`` 1..5, computed by the
    reference implementation (the ``imagecorruptions`` package) image by image on the CPU.

    Each image is quantised to uint8 (``round(255 x)``) as the package expects, corrupted, and returned as
    ``uint8 / 255`` in ``x``'s dtype and on its device. Grayscale images (C = 1) are corrupted as the package
    does (the gray plane copied to three channels) and the first channel is kept; other channel counts and
    images smaller than 32x32 (the reference code's minimum) are refused. The package draws from numpy's
    global RNG (and, for impulse_noise and glass_blur, from a seed it is given): it is seeded with ``seed``
    for the batch, each image's own seed drawn from it, so the same call gives the same images, and numpy's
    global RNG is given back to the caller as it was. glass_blur is slow (a few seconds per image at 224 px,
    and a numba compilation on first use).

    Args:
        x: images (N, C, H, W), floating, in [0, 1], C 1 or 3, H and W >= 32.
        name: one of :data:`IMAGENET_C` or :data:`IMAGENET_C_EXTRA`.
        severity: 1 to 5.
        seed: seeds the batch's draws (an integer in [0, 2**32)).

    Returns:
        The corrupted images.
    """
    if name not in IMAGENET_C + IMAGENET_C_EXTRA:
        raise ValueError(f"name must be an ImageNet-C corruption, one of {', '.join(IMAGENET_C + IMAGENET_C_EXTRA)}; "
                         f"got {name!r}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(map(str, SEVERITIES))}; got {severity!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    x = _check_shape(check_images(x))
    package = _package()
    takes_seed = "seed" in inspect.signature(package.corruption_dict[name]).parameters
    images = (x.detach().float().cpu().permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    state = np.random.get_state()
    try:
        np.random.seed(int(seed))
        seeds = np.random.randint(0, 2**31 - 1, size=len(images))
        out = []
        for image, own in zip(images, seeds, strict=True):
            np.random.seed(own)
            extra = {"seed": int(own)} if takes_seed else {}  # its own generator, not numpy's global one
            result = package.corrupt(image[..., 0] if image.shape[-1] == 1 else image, severity=severity,
                                   corruption_name=name, **extra)
            out.append(result[..., :1] if image.shape[-1] == 1 else result)
    finally:
        np.random.set_state(state)
    corrupted = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype).div_(255)
    if corrupted.shape != x.shape:
        raise RuntimeError(f"imagecorruptions' {name} returned images of shape {tuple(corrupted.shape[1:])} for "
                           f"{tuple(x.shape[1:])}")
    return corrupted.to(x.device)


def _check_shape(x: Tensor) -> Tensor:
    """``x`` if ImageNet-C's corruptions can take it: (N, C, H, W) with 1 or 3 channels, H and W >= 32."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"x must be images (N, C, H, W) with 1 or 3 channels for ImageNet-C; got shape "
                         f"{tuple(x.shape)}")
    if min(x.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"ImageNet-C's corruptions need images of at least {MIN_SIDE}x{MIN_SIDE} pixels (the "
                         f"reference code's minimum); got {x.shape[-2]}x{x.shape[-1]}: resize the images first")
    return x


def _package():
    """The imagecorruptions module, or an ImportError that names the extra to install."""
    try:
        import imagecorruptions
    except ImportError as err:
        raise ImportError("ImageNet-C corruptions need the imagecorruptions package: pip install 'advkit[corruptions]' "
                          f"({err})") from None
    return imagecorruptions


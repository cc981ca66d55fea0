"""Image sets read lazily from files: a Dataset holds the files' paths and labels and decodes one
image per item, so a set of any size (ImageNet's validation set is 30 GB as float32) takes no memory
beyond the batches read from it.

:func:`image_folder` reads any class-per-folder tree (the classes: the sorted folder names);
:func:`imagenet` reads ImageNet's validation folder (1,000 WNID folders, whose sorted order is the
standard class index), with the standard preprocessing (short side resized to 256, centre crop of
224) and optionally RobustBench's 5,000-image subset. Images are decoded with PIL as RGB.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..core.numbers import check_number

#: The file endings read as images (any case); other files in the tree are ignored.
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
#: ``subset=`` of :func:`imagenet` that reads RobustBench's list of 5,000 validation images.
ROBUSTBENCH = "robustbench"
#: Where the installed ``robustbench`` package keeps that list, relative to the package folder.
ROBUSTBENCH_LIST = Path("helper_files") / "imagenet_test_image_ids.txt"
IMAGENET_CLASSES = 1000


class ImageFiles(Dataset):
    """``(image, label)`` pairs decoded from image files on each ``__getitem__``: the image as a float32
    tensor (3, H, W) in [0, 1] (PIL, RGB), its short side resized to ``resize`` (torchvision's ``Resize``
    on PIL images, with ``interpolation``) and centre-cropped to ``crop`` (square), each where given.
    Without ``crop`` every image must come out at the size of the first one: an image of another size
    is a ValueError naming it.

    Attributes: ``samples`` (``(path, label)`` pairs, in order), ``classes`` (the class names, in
    label order), ``num_classes``, ``targets`` (the labels).
    """

    def __init__(self, samples: Sequence[tuple[Path, int]], classes: Sequence[str], resize: int | None = None,
                 crop: int | None = None, interpolation: str = "bilinear"):
        """A lazy set of image files.

        Args:
            samples: ``(path, label)`` pairs, each label in [0, len(classes)).
            classes: the class names, in label order.
            resize: the short side's length after resizing (None: not resized).
            crop: the side of the centre crop (None: not cropped).
            interpolation: the resizing's interpolation, a name of torchvision's ``InterpolationMode``
                (``"bilinear"``, ``"bicubic"``...; antialiased on PIL images).
        """
        self.resize, self.crop = _sizes(resize, crop)
        self.interpolation = _interpolation(interpolation)
        self.samples = [(Path(path), int(label)) for path, label in samples]
        self.classes = tuple(classes)
        bad = [(p, y) for p, y in self.samples if not 0 <= y < len(self.classes)]
        if bad:
            raise ValueError(f"labels must lie in [0, {len(self.classes)}) ({len(self.classes)} classes); "
                             f"{bad[0][0]} has {bad[0][1]}")
        self.targets = [label for _, label in self.samples]
        self._shape: tuple[int, ...] | None = None

    @property
    def num_classes(self) -> int:
        """The number of classes (``len(classes)``)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = self._decode(path)
        if self.crop is None:
            if self._shape is None:
                self._shape = tuple(self._decode(self.samples[0][0]).shape) if index else tuple(image.shape)
            if tuple(image.shape) != self._shape:
                raise ValueError(f"{path} gives an image of shape {tuple(image.shape)}, {self.samples[0][0]} one "
                                 f"of {self._shape}: images of several sizes need crop= (and resize=) to make one "
                                 "size")
        return image, label

    def _decode(self, path: Path) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms import functional as TF

        with Image.open(path) as file:
            image = file.convert("RGB")
        if self.resize is not None:
            image = TF.resize(image, self.resize, TF.InterpolationMode(self.interpolation))
        if self.crop is not None:
            image = TF.center_crop(image, self.crop)
        return TF.pil_to_tensor(image).float().div_(255.0)

    def __repr__(self) -> str:
        return (f"ImageFiles({len(self)} images, {self.num_classes} classes, resize={self.resize}, "
                f"crop={self.crop}, interpolation={self.interpolation!r})")


def image_folder(root: str | Path, resize: int | None = None, crop: int | None = None,
                 interpolation: str = "bilinear") -> ImageFiles:
    """The images of a class-per-folder tree ``root/<class>/**/<image>`` as a lazy :class:`ImageFiles`:
    the classes are the sorted names of ``root``'s sub-folders (hidden ones skipped), the images every
    file under a class folder ending in one of :data:`EXTENSIONS`, sorted by path.

    Args:
        root: the tree's top folder.
        resize: the short side's length after resizing (None, the default: images as they are).
        crop: the side of the centre crop (None, the default: not cropped; then all images must share
            one size).
        interpolation: the resizing's interpolation (see :class:`ImageFiles`).
    """
    _sizes(resize, crop)
    _interpolation(interpolation)
    root = _folder(root, "folder", "put one sub-folder per class there, holding that class's images")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    samples = [(path, label) for label, name in enumerate(classes) for path in _images(root / name)]
    if not samples:
        raise FileNotFoundError(f"no images under {root}: put one sub-folder per class there, holding that class's "
                                f"images ({', '.join(EXTENSIONS)}); found {len(classes)} class folders")
    return ImageFiles(samples, classes, resize, crop, interpolation)


def imagenet(root: str | Path, resize: int | None = 256, crop: int | None = 224,
             subset: str | Path | None = None, interpolation: str = "bilinear") -> ImageFiles:
    """ImageNet's validation set as a lazy :class:`ImageFiles`, with the standard preprocessing.

    ``root`` is the validation folder (or the folder holding it as ``val``): 1,000 folders named by
    WNID (``n01440764``...), whose sorted order gives the standard class indices, each holding its
    images. Any other number of class folders is refused: the indices would shift.

    Args:
        root: the validation folder, or its parent.
        resize: the short side's length after resizing (the standard 256; None: not resized).
        crop: the side of the centre crop (the standard 224; set it to a model's own input size).
        subset: None (all the images), ``"robustbench"`` (RobustBench's 5,000 images, in its order,
            the list read from the installed ``robustbench`` package's helper files), or the path of a
            list file with one ``WNID/file name`` per line.
        interpolation: the resizing's interpolation (the standard bilinear; see :class:`ImageFiles`).
    """
    _sizes(resize, crop)
    _interpolation(interpolation)
    root = Path(root)
    if (root / "val").is_dir():
        root = root / "val"
    root = _folder(root, "imagenet", "put ImageNet's validation images there, one folder per class named by "
                   "its WNID (n01440764/ILSVRC2012_val_00000293.JPEG, ...)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) != IMAGENET_CLASSES:
        raise ValueError(f"{root} holds {len(classes)} class folders, not ImageNet's {IMAGENET_CLASSES}: the class "
                         "indices (the sorted WNIDs) would not be the standard ones; for another tree use "
                         "load('folder', root)")
    if subset is None:
        samples = [(path, label) for label, name in enumerate(classes) for path in _images(root / name)]
    else:
        samples = _listed(root, _subset_file(subset), {name: i for i, name in enumerate(classes)})
    return ImageFiles(samples, classes, resize, crop, interpolation)


def _sizes(resize: int | None, crop: int | None) -> tuple[int | None, int | None]:
    """``resize`` and ``crop`` checked: each None or an integer >= 1."""
    return tuple(None if v is None else check_number(v, name, low=1, low_open=False, integer=True)
                 for v, name in ((resize, "resize"), (crop, "crop")))  # type: ignore[return-value]


def _interpolation(name: str) -> str:
    """``name`` checked against torchvision's ``InterpolationMode`` values."""
    from torchvision.transforms import InterpolationMode

    modes = [m.value for m in InterpolationMode]
    if name not in modes:
        raise ValueError(f"interpolation must be one of {', '.join(modes)}; got {name!r}")
    return name


def _folder(root: str | Path, name: str, what: str) -> Path:
    """``root`` as a Path, or a FileNotFoundError that says what to put there."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: no folder {root}: {what}")
    return root


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _subset_file(subset: str | Path) -> Path:
    """The list file ``subset`` names: RobustBench's (from the installed package, without importing it) or a path."""
    if str(subset) != ROBUSTBENCH:
        path = Path(subset)
        if not path.is_file():
            raise FileNotFoundError(f"subset: no list file {path} (one 'WNID/file name' per line)")
        return path
    spec = importlib.util.find_spec("robustbench")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / ROBUSTBENCH_LIST).is_file():
            return Path(folder) / ROBUSTBENCH_LIST
    raise FileNotFoundError(f"subset='robustbench' reads the list of RobustBench's 5,000 images from the robustbench "
                            f"package's {ROBUSTBENCH_LIST.as_posix()}, which is not installed: pip install "
                            "robustbench, or pass subset=PATH of that list file")


def _listed(root: Path, path: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    """The ``(path, label)`` of each ``WNID/file name`` line of the list file ``path``, in its order."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    samples, missing = [], []
    for line in lines:
        wnid = line.split("/")[0]
        if wnid not in index or len(line.split("/")) != 2:
            raise ValueError(f"{path}: {line!r} is not 'WNID/file name' with a WNID among the class folders of {root}")
        samples.append((root / line, index[wnid]))
        if not samples[-1][0].is_file():
            missing.append(line)
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(lines)} images listed in {path} are missing under "
                                f"{root}, the first {missing[0]}")
    return samples

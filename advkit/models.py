"""Reference classifiers, the ``Normalize`` layer (normalisation belongs to the model), and loading
a model from files: a state dict into a module, a factory named ``package.module:function``, a
TorchScript archive, or a model of timm, torchvision, Hugging Face or the RobustBench zoo by name
(:func:`load`), wrapped to take images in [0, 1] and return logits."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from .files import load_tensors

#: What to save instead of a file advkit cannot read as a model.
SAVE_ADVICE = ("save a model's weights with torch.save(model.state_dict(), path) (not a whole pickled model), or the "
               "whole model with torch.jit.save")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the model's first layer, so attacks stay in [0, 1].

    Args:
        mean: per-channel means.
        std: per-channel standard deviations.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class _ChannelsLastMaxPool(torch.autograd.Function):
    """2x2 max-pooling through torch's channels-last CPU kernel, 64 samples at a time (in cache): the same
    values and max indices as its NCHW kernel, which is several times slower on a CPU at MNIST sizes
    (``benchmarks/maxpool.py``), in the input's memory format; the gradient goes to those indices
    (differentiable again, for penalties)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [nn.functional.max_pool2d(part.contiguous(memory_format=torch.channels_last), 2, return_indices=True)
                 for part in x.split(64)]
        ctx.save_for_backward(torch.cat([indices.contiguous() for _, indices in parts]))
        ctx.size = x.shape[-2:]
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        keep = torch.channels_last if channels_last else torch.contiguous_format
        return torch.cat([pooled for pooled, _ in parts]).contiguous(memory_format=keep)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (indices,) = ctx.saved_tensors
        # aten's op, which F.max_unpool2d calls after checking the size through torch._check_value: that
        # check imports sympy (slow, once a process)
        return torch.ops.aten.max_unpool2d(grad, indices, list(ctx.size))


def _pairwise_max(x: Tensor) -> Tensor:
    """2x2 max-pooling with stride 2 as two elementwise maxima (rows, then columns): the values of
    ``max_pool2d`` (NaN included), several times faster on a CPU, without indices for a gradient."""
    x = x[..., :x.shape[-2] // 2 * 2, :x.shape[-1] // 2 * 2]
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` with equal outputs and gradients, faster on a CPU: elementwise maxima where no
    gradient is taken, torch's channels-last kernel where one is; scripted or off the CPU, torch's own."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting() or x.device.type != "cpu" or x.dim() != 4:
            return nn.functional.max_pool2d(x, 2)
        return self._fast(x)

    @torch.jit.unused
    def _fast(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _ChannelsLastMaxPool.apply(x)
        return _pairwise_max(x)


class SmallCNN(nn.Module):
    """Two conv blocks and two linear layers, small enough to train and attack on a CPU.

    ``input_size`` is the side of the square input (28 for MNIST, 32 for CIFAR, 8 for digits).
    ``features(x)`` gives the penultimate activations (used for classifier-FID).

    Args:
        in_channels: channels of the input images.
        num_classes: logits returned.
        input_size: the side of the square input images.
        width: channels of the first conv block (the second has twice as many).
        hidden: units of the hidden linear layer.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, width: int = 32,
                 hidden: int = 128):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), MaxPool2x2(),
            nn.Flatten(),
            nn.Linear(2 * width * (input_size // 4) ** 2, hidden), nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv(x))


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016): BN-ReLU-conv twice, identity or 1x1 shortcut.

    Args:
        cin: input channels.
        cout: output channels.
        stride: the first convolution's (and the shortcut's) stride.
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 for 32x32 inputs, the standard CIFAR-10 robustness architecture.

    Args:
        in_channels: channels of the input images.
        num_classes: logits returned.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(512)
        self.head = nn.Linear(512, num_classes)

    def features(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn(self.blocks(self.stem(x))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def wide_smallcnn(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> SmallCNN:
    """A SmallCNN whose hidden layer has 1,024 units (Madry et al.'s MNIST width) instead of 128: the
    model advkit's defenses train by default (``--arch smallcnn-wide``).

    Args:
        in_channels: channels of the input images.
        num_classes: logits returned.
        input_size: the side of the square input images.
    """
    return SmallCNN(in_channels, num_classes, input_size, hidden=1024)


ARCHS = {"smallcnn": SmallCNN, "smallcnn-wide": wide_smallcnn, "preactresnet18": PreActResNet18}


def build(arch: str, **kwargs) -> nn.Module:
    """A reference model by name (``"smallcnn"`` or ``"preactresnet18"``).

    Args:
        arch: a name of :data:`ARCHS`.
        **kwargs: the architecture's constructor arguments.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    return ARCHS[arch](**kwargs)


def from_factory(spec: str) -> nn.Module:
    """Call the function named ``"package.module:function"`` (no arguments) and return the module it
    builds. The current folder is searched too, so ``mymodels:make`` finds ``./mymodels.py``.

    Args:
        spec: ``"package.module:function"``.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model factory must be 'package.module:function', got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.append("")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not module_name.startswith(err.name):
            raise  # the factory's module exists but one of its own imports is missing: its traceback helps
        raise ValueError(f"model factory {spec!r}: no module named {err.name!r} on the Python path "
                         "(the current folder and PYTHONPATH are searched)") from None
    if not hasattr(module, attr):
        raise ValueError(f"model factory {spec!r}: {module_name} has no function {attr!r}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise TypeError(f"model factory {spec!r}: {module_name}.{attr} is a {type(factory).__name__}, not a function")
    model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory {spec!r} must return a torch.nn.Module, got {type(model).__name__}")
    return model


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``), not a ``torch.save`` file.

    Args:
        path: the file.
    """
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """The TorchScript module saved at ``path``, on the CPU.

    Args:
        path: the TorchScript archive.
    """
    _exists(path)
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise ValueError(f"{path} is not a readable TorchScript archive: {str(err).splitlines()[0]}") from err


def load_state_dict(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the state dict saved at ``path`` (``torch.save(model.state_dict(), path)``, read with
    ``weights_only=True``, or a ``.safetensors`` file) into ``model``. A file that is not a state dict,
    or one of another architecture (missing, unexpected or differently shaped entries), is a ``ValueError``
    that says which.

    Args:
        model: the model to load into (in place).
        path: the state dict's file.

    Returns:
        ``model``.
    """
    _exists(path)
    if Path(path).suffix == ".safetensors":
        state = _require("safetensors.torch", "timm", "reading a .safetensors file").load_file(str(path))
    else:
        state = load_tensors(path, "a state dict", advice=SAVE_ADVICE)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; save one with "
                         "torch.save(model.state_dict(), path)")
    mismatch = state_dict_mismatch(model, state)
    if mismatch:
        raise ValueError(f"{path} is a state dict of another architecture than {type(model).__name__}: {mismatch}")
    model.load_state_dict(state)
    return model


def state_dict_mismatch(model: nn.Module, state: dict[str, torch.Tensor], shown: int = 3) -> str:
    """What keeps ``state`` from loading into ``model`` (missing, unexpected, differently shaped
    entries, a few of each named), or "" when it fits.

    Args:
        model: the model to load into.
        state: the state dict.
        shown: entries named per kind of mismatch.
    """
    own = model.state_dict()
    parts = []
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    for what, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(f"{len(keys)} {what} entries ({_few(keys, shown, ', ')})")
    shapes = [f"{k} {tuple(state[k].shape)} in the file vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches ({_few(shapes, shown, '; ')})")
    return ", ".join(parts)


def _few(items: list[str], shown: int, sep: str) -> str:
    return sep.join(items[:shown]) + (f"{sep}..." if len(items) > shown else "")


def _exists(path: str | Path) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist" if not Path(path).exists()
                                else f"model file {str(path)!r} is not a file")


#: The libraries :func:`load` brings models from (``"LIBRARY:NAME"``); the extra ``advkit[LIBRARY]`` installs
#: each but torchvision (a dependency).
LIBRARIES = ("timm", "torchvision", "hf", "robustbench")


@dataclass(frozen=True)
class Preprocessing:
    """How images reach a model of another library, read from its own configuration: resized to
    ``resize`` (as ``torchvision.transforms.Resize`` takes it: an int is the shorter side, a pair the
    exact height and width; None: not resized) with ``interpolation``, then center-cropped to
    ``input_size`` (channels, height, width). Data loaders size images with it; see :func:`input_size`.

    Args:
        input_size: (channels, height, width) of the images the model takes.
        resize: the size images are resized to before the crop, or None.
        interpolation: the resizing's interpolation (``"bilinear"``, ``"bicubic"``...).
    """

    input_size: tuple[int, int, int]
    resize: int | tuple[int, int] | None = None
    interpolation: str = "bilinear"


class External(nn.Module):
    """A model of another library as advkit takes every model: images in [0, 1] in, logits out.
    It applies the normalisation the model was trained with (:class:`Normalize`, when given), returns
    the ``.logits`` of an output object (Hugging Face), and carries the model's :class:`Preprocessing`.

    Args:
        model: the library's module.
        mean: per-channel means of its normalisation, or None (none, or the model normalises inside).
        std: per-channel standard deviations, with ``mean``.
        preprocessing: how images reach it, or None where its configuration does not say.
        source: the ``"LIBRARY:NAME"`` it was loaded as (shown in its repr).
        hf: whether it is a Hugging Face model (called with ``pixel_values=``, its ``.logits`` returned).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 preprocessing: Preprocessing | None = None, source: str = "", hf: bool = False):
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give mean and std together, or neither")
        self.normalize = Normalize(mean, std) if mean is not None else nn.Identity()
        self.model = model
        self.preprocessing = preprocessing
        self.source = source
        self.hf = hf

    def forward(self, x: Tensor) -> Tensor:
        x = self.normalize(x)
        return self.model(pixel_values=x).logits if self.hf else self.model(x)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, preprocessing={self.preprocessing}"


def preprocessing(model: nn.Module) -> Preprocessing | None:
    """The :class:`Preprocessing` a model carries (the ``preprocessing`` attribute that :func:`load`
    sets), or None: advkit's own models and a user's take the data as it is.

    Args:
        model: the model.
    """
    found = getattr(model, "preprocessing", None)
    return found if isinstance(found, Preprocessing) else None


def input_size(model: nn.Module) -> tuple[int, int, int] | None:
    """(channels, height, width) of the images ``model`` takes, from its :class:`Preprocessing`, or
    None where it carries none. The CLI passes it to the data loaders that resize and crop.

    Args:
        model: the model.
    """
    found = preprocessing(model)
    return found.input_size if found is not None else None


def load(spec: str, weights: str | Path | None = None, *, num_classes: int | None = None,
         dataset: str | None = None, threat_model: str | None = None) -> External:
    """A model of another library by name, in eval mode, taking images in [0, 1] and returning logits,
    normalised and sized as its own configuration says (:class:`External`):

    - ``"timm:NAME"``: ``timm.create_model(NAME, num_classes=...)`` (no download), ``weights`` a state
      dict file (``.pt``/``.pth``/``.bin``, or ``.safetensors``); mean, std and input size from its
      ``pretrained_cfg``. Extra ``advkit[timm]``.
    - ``"torchvision:NAME"``: ``torchvision.models.get_model(NAME, weights=None, num_classes=...)`` and
      ``weights`` a state dict file; mean, std and sizes from the transforms of its default weights.
    - ``"hf:FOLDER"``: a Hugging Face image classifier saved with ``save_pretrained`` (with its image
      processor's ``preprocessor_config.json`` for mean, std and size), read with ``local_files_only``;
      the ``.logits`` of its output. Extra ``advkit[hf]``.
    - ``"robustbench:NAME"``: the zoo entry through ``robustbench.utils.load_model`` with ``weights`` as
      its ``model_dir`` (the file must be at ``model_dir/DATASET/THREAT_MODEL/NAME.pt``: nothing is
      downloaded), ``dataset`` (cifar10, cifar100, imagenet) and ``threat_model`` (Linf, L2,
      corruptions); these models normalise inside; the input size is RobustBench's preprocessing for
      the entry. Extra ``advkit[robustbench]``.

    Args:
        spec: ``"LIBRARY:NAME"``, LIBRARY one of :data:`LIBRARIES`.
        weights: the weights file (timm, torchvision; None: random weights), or RobustBench's
            ``model_dir``; not taken by ``hf:`` (the folder holds them).
        num_classes: logits of a timm or torchvision model (default: the architecture's, 1,000).
        dataset: RobustBench's dataset.
        threat_model: RobustBench's threat model.
    """
    library, _, name = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if library not in LIBRARIES or not name:
        raise ValueError(f"spec must be 'LIBRARY:NAME' with LIBRARY one of {', '.join(LIBRARIES)}; got {spec!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if num_classes is not None and library in ("hf", "robustbench"):
        raise ValueError(f"num_classes is not taken by {library}: models: their configuration gives the classes")
    if weights is not None and library == "hf":
        raise ValueError("weights is not taken by hf: models: the save_pretrained folder holds them")
    if (dataset is not None or threat_model is not None) and library != "robustbench":
        raise ValueError("dataset and threat_model are taken by robustbench: models only")
    if library == "robustbench":
        model = _robustbench(name, weights, dataset, threat_model)
    elif library == "hf":
        model = _hf(name)
    else:
        model = (_timm if library == "timm" else _torchvision)(name, weights, num_classes)
    model.source = spec
    return model.eval()


def _timm(name: str, weights: str | Path | None, num_classes: int | None) -> External:
    timm = _require("timm", "timm", f"timm:{name}")
    if not timm.is_model(name):
        raise ValueError(f"timm has no architecture {name!r} (timm.list_models() names them)")
    model = timm.create_model(name, pretrained=False, **_classes(num_classes))
    if weights is not None:
        load_state_dict(model, weights)
    config = timm.data.resolve_data_config({}, model=model)
    channels, height, width = config["input_size"]
    crop_pct = config.get("crop_pct") or 1.0
    resize = (int(height / crop_pct) if height == width else
              (int(height / crop_pct), int(width / crop_pct)))
    shape = Preprocessing((channels, height, width), resize, config.get("interpolation", "bilinear"))
    return External(model, config["mean"], config["std"], shape)


def _torchvision(name: str, weights: str | Path | None, num_classes: int | None) -> External:
    import torchvision.models

    try:
        model = torchvision.models.get_model(name, weights=None, **_classes(num_classes))
    except ValueError as err:
        raise ValueError(f"torchvision has no architecture {name!r} (torchvision.models.list_models() names "
                         "them)") from err
    if weights is not None:
        load_state_dict(model, weights)
    try:  # the transforms its published weights were evaluated with (built here, nothing downloaded)
        transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    except (ValueError, AttributeError):
        return External(model)
    crop, resize = transforms.crop_size, transforms.resize_size
    shape = Preprocessing((3, crop[0], crop[-1]), resize[0] if len(resize) == 1 else tuple(resize),
                          transforms.interpolation.value)
    return External(model, transforms.mean, transforms.std, shape)


def _hf(folder: str) -> External:
    transformers = _require("transformers", "hf", f"hf:{folder}")
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"hf:{folder}: no config.json in {str(path)!r}; give the folder a Hugging Face "
                                "model's save_pretrained() wrote")
    model = transformers.AutoModelForImageClassification.from_pretrained(path, local_files_only=True)
    channels, side = getattr(model.config, "num_channels", 3), getattr(model.config, "image_size", None)
    native = Preprocessing((channels, *_pair(side))) if side else None  # the model's own size, not resized
    if not (path / "preprocessor_config.json").is_file():
        return External(model, preprocessing=native, hf=True)
    processor = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
    size = dict(getattr(processor, "size", None) or {})
    crop = dict(getattr(processor, "crop_size", None) or {}) if getattr(processor, "do_center_crop", False) else {}
    if "shortest_edge" in size:  # the short side resized (to edge / crop_pct where a crop_pct is given)
        edge, crop_pct = size["shortest_edge"], getattr(processor, "crop_pct", None)
        resize, final = (int(edge / crop_pct) if crop_pct else edge), (edge, edge)
    else:  # resized to exactly (height, width)
        resize = (size["height"], size["width"]) if size else None
        final = resize or (native.input_size[1:] if native else None)
    if crop:
        final = (crop["height"], crop["width"])
    resample = getattr(processor, "resample", None)
    interpolation = PIL_RESAMPLING.get(int(resample), "bilinear") if resample is not None else "bilinear"
    shape = Preprocessing((channels, *final), resize, interpolation) if final else None
    if getattr(processor, "do_normalize", False):
        return External(model, processor.image_mean, processor.image_std, shape, hf=True)
    return External(model, preprocessing=shape, hf=True)


#: PIL's resampling filters (Hugging Face image processors' ``resample``) by the name torchvision gives them.
PIL_RESAMPLING = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _robustbench(name: str, model_dir: str | Path | None, dataset: str | None,
                 threat_model: str | None) -> External:
    require_robustbench(f"robustbench:{name}")
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    from robustbench.utils import load_model

    for what, value, kind in (("dataset", dataset, BenchmarkDataset), ("threat_model", threat_model, ThreatModel)):
        if value not in {e.value for e in kind}:
            raise ValueError(f"robustbench:{name} needs {what} among {', '.join(e.value for e in kind)}; "
                             f"got {value!r}")
    if model_dir is None:
        raise ValueError(f"robustbench:{name} needs weights: the model_dir that holds "
                         f"{dataset}/{threat_model}/{name}.pt")
    entries = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)]
    if name not in entries:
        raise ValueError(f"RobustBench has no {dataset}/{threat_model} entry {name!r} "
                         "(robustbench.model_zoo.model_dicts lists them)")
    files = entries[name]["gdrive_id"]
    if not files:  # the entry's constructor fetches its weights from elsewhere (ImageNet's Standard_R50: torchvision)
        raise ValueError(f"robustbench:{name} has no weights file of its own; load the architecture it names "
                         "with torchvision: or timm: and --weights")
    folder = Path(model_dir) / dataset / threat_model
    paths = ([folder / f"{name}.pt_m{i}.pt" for i in range(len(files))] if isinstance(files, list)
             else [folder / f"{name}.pt"])
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:  # robustbench would download it: never here
        raise FileNotFoundError(f"robustbench:{name}: no weights file at {', '.join(missing)} (RobustBench's "
                                "model_dir layout; download it once with robustbench.utils.load_model)")
    model = load_model(name, model_dir=str(model_dir), dataset=dataset, threat_model=threat_model)
    return External(model, preprocessing=robustbench_preprocessing(name, dataset, threat_model))


def robustbench_preprocessing(name: str, dataset: str, threat_model: str) -> Preprocessing:
    """The preprocessing RobustBench evaluates its zoo entry ``name`` with (``robustbench.data.get_preprocessing``:
    its Resize and CenterCrop; CIFAR images as they are, 32x32).

    Args:
        name: the entry.
        dataset: cifar10, cifar100 or imagenet.
        threat_model: Linf, L2 or corruptions.
    """
    require_robustbench("robustbench_preprocessing")
    from robustbench.data import get_preprocessing
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    steps = get_preprocessing(BenchmarkDataset(dataset), ThreatModel(threat_model), name, None).transforms
    side = {"cifar10": 32, "cifar100": 32}.get(dataset, 224)
    resize, interpolation = None, "bilinear"
    for step in steps:  # Resize and CenterCrop of torchvision (ToTensor aside)
        if type(step).__name__ == "Resize":
            size = [step.size] if isinstance(step.size, int) else list(step.size)
            resize, interpolation, side = size[0] if len(size) == 1 else tuple(size), step.interpolation.value, size[0]
        elif type(step).__name__ == "CenterCrop":
            side = step.size[0]
    return Preprocessing((3, side, side), resize, interpolation)


def _classes(num_classes: int | None) -> dict[str, int]:
    return {} if num_classes is None else {"num_classes": num_classes}


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[-1])


def _require(module: str, extra: str, what: str) -> ModuleType:
    """The module, or an ImportError that names the advkit extra installing it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not module.startswith(err.name):
            raise
        raise ImportError(f"{what} needs the {module.split('.')[0]} package: pip install 'advkit[{extra}]'") from None


def require_robustbench(what: str) -> Any:
    """The ``robustbench`` package, imported, or an ImportError naming the extra (``what`` needs it). Its
    PyPI release imports the AutoAttack code as ``autoattack`` (the GitHub package's name) while depending
    on PyPI's ``pyautoattack``, the same code: where no package of that name is installed (a module such as
    benchmarks/autoattack.py does not count), the name is given to ``pyautoattack``.

    Args:
        what: what needs it, for the error.
    """
    found = importlib.util.find_spec("autoattack")
    if (found is None or found.submodule_search_locations is None) and importlib.util.find_spec("pyautoattack"):
        import pyautoattack
        import pyautoattack.state

        sys.modules.setdefault("autoattack", pyautoattack)
        sys.modules.setdefault("autoattack.state", pyautoattack.state)
    try:
        return _require("robustbench", "robustbench", what)
    except ModuleNotFoundError as err:
        if err.name != "pkg_resources":
            raise
        raise ImportError(f"{what}: robustbench imports pkg_resources, which setuptools 81 and later lack: "
                          "pip install 'advkit[robustbench]' (it pins setuptools<81)") from None

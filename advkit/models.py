"""Reference classifiers, the ``Normalize`` layer (normalisation belongs to the model), and loading
a model from files: a state dict into a module, a factory named ``package.module:function``, or a
TorchScript archive."""
from __future__ import annotations

import importlib
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

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
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
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
    """Load the state dict saved at ``path`` (``torch.save(model.state_dict(), path)``) into ``model``,
    read with ``weights_only=True``. A file that is not a state dict, or one of another architecture
    (missing, unexpected or differently shaped entries), is a ``ValueError`` that says which.

    Args:
        model: the model to load into (in place).
        path: the state dict's file.

    Returns:
        ``model``.
    """
    _exists(path)
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

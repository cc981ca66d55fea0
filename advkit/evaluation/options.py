"""How an evaluation runs: the options of :func:`advkit.evaluate`, checked once and read-only.

The options travel as one object from ``evaluate`` to each model's evaluation, its curves and
its sanity checks, and the report records them (:meth:`EvaluationOptions.config`). A new option
is a field here (with its check in ``__post_init__`` when it needs one) and a keyword of ``evaluate``.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..acceleration import compile_options
from ..core import get_norm
from ..data.corruptions import CORRUPTIONS
from ..data.suites import CorruptionSuite, OwnCorruptions, Selection, suite_of
from ..devices import default_device
from ..validation import check_eps, check_number
from .batched import BatchSize
from .smoothed import smoothing_options
from .specs import DEFAULT_ATTACKS, AttackSpec, resolve

#: The batch size off CUDA; on CUDA ``evaluate`` starts from AUTO_BATCH_START and halves on out-of-memory.
DEFAULT_BATCH = 256
AUTO_BATCH_START = 4096
#: Field metadata of the options the report's ``config`` leaves out.
UNRECORDED = {"recorded": False}
#: Field metadata of the options the report's ``config`` records only when they are on (after the others).
RECORDED_WHEN_SET = {"recorded": False, "when_set": True}


@dataclass(frozen=True)
class EvaluationOptions:
    """The options of :func:`advkit.evaluate` (see there for their meaning), validated when built.

    Built from what ``evaluate`` accepts and kept normalised: ``attacks`` as resolved
    :class:`~advkit.evaluation.specs.AttackSpec` s, ``eps`` as the sorted, de-duplicated grid,
    ``device`` as a ``torch.device`` (``None``: CUDA when available), ``corruptions`` as a tuple of
    corruption names (``()``: off; a :class:`~advkit.data.suites.Selection` that knows their suite,
    :attr:`suite`: advkit's own unless ``"imagenet-c"`` or a suite object was given), and ``batches`` the
    :class:`~advkit.evaluation.batched.BatchSize` the passes share: ``batch_size`` rows, or for
    ``batch_size=None`` :data:`DEFAULT_BATCH`, and on CUDA from :data:`AUTO_BATCH_START`, adaptive.
    A bad option raises ``ValueError``/``TypeError`` naming it; ``dataclasses.replace`` checks again.
    The fields the report records come first, in the order its ``config`` lists them.
    """

    attacks: tuple[AttackSpec, ...] = DEFAULT_ATTACKS
    eps: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    norm: str = "linf"
    n: int | None = None
    batch_size: int | None = None
    seed: int = 0
    survivors: bool = True
    warm_start: bool = True
    probe: int = 100
    queries: int = 500
    device: torch.device = field(default=None, metadata=UNRECORDED)
    progress: bool = field(default=True, metadata=UNRECORDED)
    checks: bool = field(default=True, metadata=UNRECORDED)
    examples: int = field(default=8, metadata=UNRECORDED)
    corruptions: bool | str | Sequence[str] | CorruptionSuite = field(default=False, metadata=RECORDED_WHEN_SET)
    amp: bool = field(default=False, metadata=RECORDED_WHEN_SET)
    channels_last: bool = field(default=False, metadata=RECORDED_WHEN_SET)
    compile: bool | dict[str, Any] = field(default=False, metadata=RECORDED_WHEN_SET)
    eot: int | None = field(default=None, metadata=RECORDED_WHEN_SET)
    smoothing: Any = field(default=None, metadata=RECORDED_WHEN_SET)
    batches: BatchSize = field(default=None, init=False, metadata=UNRECORDED)

    def __post_init__(self) -> None:
        norm = get_norm(self.norm).name
        grid = _grid(self.eps, norm)
        specs = self.attacks if _resolved(self.attacks) else tuple(resolve(self.attacks))
        device = default_device(self.device)
        batch_size, auto = self.batch_size, self.batch_size is None and device.type == "cuda"
        if self.n is not None:  # an integer (10.5 or "3" refused here, not deep in the data); >= 1 below
            object.__setattr__(self, "n", check_number(self.n, "n", low=None, integer=True))
        if batch_size is None:  # on CUDA the largest batch that fits, else a fixed default
            batch_size = AUTO_BATCH_START if auto else DEFAULT_BATCH
        if batch_size < 1 or (self.n is not None and self.n < 1) or self.probe < 0 or self.examples < 0:
            raise ValueError(f"batch_size and n must be >= 1, probe and examples >= 0; "
                             f"got {batch_size}, {self.n}, {self.probe}, {self.examples}")
        for name in ("amp", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        compile_options(self.compile)
        if self.eot is not None:  # None: decided per model by the randomized probe
            object.__setattr__(self, "eot", check_number(self.eot, "eot", low=1, low_open=False, integer=True))
        smoothing = smoothing_options(self.smoothing)
        if smoothing is not None and norm != "l2":
            raise ValueError(f"smoothing certifies L2 radii: evaluate it with norm='l2' (got norm={self.norm!r})")
        object.__setattr__(self, "smoothing", smoothing)
        suite = suite_of(self.corruptions)
        names = _corruptions(self.corruptions) if suite is None else suite.check_names(
            self.corruptions if isinstance(self.corruptions, Selection) else suite.corruptions)
        if names:
            names = Selection(names, OwnCorruptions(names) if suite is None else suite)
        for name, value in (("eps", grid), ("attacks", specs), ("device", device), ("corruptions", names),
                            ("batches", BatchSize(batch_size, adaptive=auto))):
            object.__setattr__(self, name, value)

    @property
    def suite(self) -> CorruptionSuite | None:
        """The suite of the corruptions evaluated (None when off)."""
        return getattr(self.corruptions, "suite", None)

    def config(self, samples: int) -> dict[str, Any]:
        """The report's ``config``: the recorded options as JSON-ready values (attacks by name,
        lists for tuples), with ``n`` the number of samples evaluated (``samples``); the options
        recorded when set (``corruptions``) follow, only when they are on."""
        recorded = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("recorded", True)}
        when_set = {f.name: _json(getattr(self, f.name)) for f in fields(self)
                    if f.metadata.get("when_set") and getattr(self, f.name)}
        recorded["batch_size"] = (f"auto (from {self.batches.start}, halved on out-of-memory)" if self.batches.adaptive
                                  else self.batches.start)
        if self.corruptions and not isinstance(self.suite, OwnCorruptions):
            when_set["corruption_suite"] = self.suite.name
        return {**recorded, "attacks": [s.name for s in self.attacks], "eps": list(self.eps), "n": samples, **when_set}


def _json(value: Any) -> Any:
    """An option's value as the report's JSON records it: tuples as lists, a dict's values that JSON
    cannot hold (a compile backend function) by their repr."""
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, dict):
        return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


def _corruptions(value: Any) -> tuple[str, ...]:
    """The corruption names to evaluate: False / None / an empty list are none, True is all of them,
    a name or a list of names (repeats dropped) is checked against CORRUPTIONS."""
    if value is None or value is False:
        return ()
    if value is True:
        return tuple(CORRUPTIONS)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, Sequence) or isinstance(names, bytes):
        raise TypeError(f"corruptions must be True, False, a list of corruption names, 'imagenet-c' or a "
                        f"CorruptionSuite, got {type(value).__name__}")
    for name in names:
        if not isinstance(name, str) or name not in CORRUPTIONS:
            raise ValueError(f"corruptions: unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)} "
                             "(or True for all of them), or name a suite: 'imagenet-c', "
                             "advkit.data.CorruptionFiles('cifar10-c', root)")
    return tuple(dict.fromkeys(names))


def _resolved(attacks: Any) -> bool:
    return isinstance(attacks, tuple) and bool(attacks) and all(isinstance(a, AttackSpec) for a in attacks)


def _grid(eps: Any, norm: str) -> tuple[float, ...]:
    """The sorted, de-duplicated eps grid from a number, a list, or a numpy array / tensor of numbers."""
    if isinstance(eps, (np.ndarray, Tensor)):
        if eps.ndim > 1:
            raise ValueError(f"eps must be a number or a 1-D list of budgets, got an array of shape {tuple(eps.shape)}")
        eps = eps.tolist()
    if _is_number(eps):
        eps = [eps]
    if isinstance(eps, (str, bytes)) or not isinstance(eps, (Sequence, set, frozenset)) or not eps:
        raise ValueError(f"eps must be a number or a non-empty list of budgets such as [0, 0.1, 0.2], got {eps!r}")
    bad = [e for e in eps if not _is_number(e)]
    if bad:
        raise TypeError(f"eps must hold numbers, got {bad[0]!r} ({type(bad[0]).__name__})")
    return tuple(sorted({check_eps(float(e), norm=norm) for e in eps}))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))

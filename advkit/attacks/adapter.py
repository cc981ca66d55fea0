"""Run any torchattacks attack behind advkit's interface and guarantees.

``from_torchattacks(ta_atk)`` returns an :class:`~advkit.attacks.Attack`, so the torchattacks
attack gets what every advkit attack has: input checks before any work, the model borrowed
unchanged (its mode, flags and the global RNG state restored), ``y=None`` meaning the model's
predictions, advkit's targeted modes, a seed, ``eps=0`` returning x unchanged, and a result
projected onto the eps-ball and [0, 1] with its success re-checked.

torchattacks is imported by nobody here: the wrapper only reads attributes of the object it is
given, so the rest of advkit works without it installed.
"""
from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any, Iterator

import torch
from torch import Tensor

from .base import TARGET_SOURCES, Attack, AttackRun, _show
from .errors import check_input_gradient

#: torchattacks' attack_mode names for the targeted modes advkit shares with it.
_TA_TARGET_MODES = {"default": False, "targeted(random)": "random", "targeted(least-likely)": "least-likely"}
_TA_NORMS = {"Linf": "linf", "L2": "l2"}


def is_torchattacks(obj: Any) -> bool:
    """True for an instance of a torchattacks attack (checked by module, without importing it)."""
    return any(cls.__module__.split(".")[0] == "torchattacks" for cls in type(obj).__mro__)


def from_torchattacks(ta_attack: Any, *, seed: int = 0, early_stop: bool = True, amp: bool = False,
                      uses_gradients: bool = True) -> "TorchAttack":
    """Wrap a torchattacks attack (any ``torchattacks.Attack``) as an advkit :class:`Attack`.

    The budget is the torchattacks object's ``eps`` and ``norm`` ("Linf"/"L2", or an ``L2`` class
    name suffix such as PGDL2); attacks without an ``eps`` (CW, DeepFool, ...) or with another norm
    are only held to the [0, 1] box. A torchattacks object set to random or least-likely targets
    becomes advkit's ``targeted="random"``/``"least-likely"`` (targets drawn by advkit, seeded);
    for chosen targets pass ``target=`` to the call. ``early_stop`` skips samples the model
    already gets wrong; ``amp`` runs the attack under bf16 autocast on CUDA. ``uses_gradients``:
    torchattacks does not say whether an attack follows the model's gradient, so declare a
    gradient-free one (Square, OnePixel, Pixle) with ``uses_gradients=False`` for the checks to read
    it as one (:attr:`Attack.uses_gradients`).

    Args:
        ta_attack: the torchattacks attack (its model is the attacked model).
        seed: seeds advkit's draws (random targets) and the wrapped attack's.
        early_stop: skip the samples the model already gets wrong.
        amp: run the attack under bf16 autocast on CUDA.
        uses_gradients: whether the wrapped attack follows the model's gradient (False for Square,
            OnePixel, Pixle).

    Returns:
        The wrapped attack.
    """
    if not is_torchattacks(ta_attack):
        raise TypeError(f"ta_attack must be a torchattacks attack, got {type(ta_attack).__name__}")
    return TorchAttack(ta_attack, seed=seed, early_stop=early_stop, amp=amp, uses_gradients=uses_gradients)


class TorchAttack(Attack):
    """An advkit attack whose search is a torchattacks attack (see :func:`from_torchattacks`)."""

    per_sample = False  # torchattacks draws from the global RNG, seeded once per call

    def __init__(self, ta_attack: Any, *, seed: int = 0, early_stop: bool = True, amp: bool = False,
                 uses_gradients: bool = True):
        if getattr(ta_attack, "normalization_used", None) is not None:
            raise ValueError("ta_attack uses set_normalization_used: advkit attacks work on [0, 1] pixels; "
                             "put the normalisation inside the model (advkit.models.Normalize) instead")
        mode = getattr(ta_attack, "attack_mode", "default")
        if mode not in _TA_TARGET_MODES:
            raise ValueError(f"ta_attack is in torchattacks mode {mode!r}: wrap it in default mode and pass "
                             "target= to the call (or use a random / least-likely mode)")
        eps, norm = _budget(ta_attack)
        self.targets = TARGET_SOURCES if "targeted" in getattr(ta_attack, "supported_mode", ()) else ()
        super().__init__(ta_attack.model, 0.0 if math.isinf(eps) else eps, norm=norm,
                         targeted=_TA_TARGET_MODES[mode], early_stop=early_stop, seed=seed, amp=amp)
        self.eps = eps  # math.inf: no ball, the final projection is onto the box alone
        self.ta_attack = ta_attack
        self.uses_gradients = bool(uses_gradients)  # declared by the caller: torchattacks does not say

    def perturb(self, run: AttackRun) -> None:
        """Hand the samples still to attack to torchattacks with advkit's labels (true classes, or
        targets in torchattacks' "targeted(label)" mode), seeded, then record its answer."""
        run.forward_clean()
        idx = run.active()
        if idx is not None and len(idx) == 0:
            return
        x = run.x if idx is None else run.x[idx]
        labels = run.labels if idx is None else run.labels[idx]
        with self._borrowed(run, x.device), _kept_state(self.model), _counting(self.model, run):
            out = self.ta_attack(x, labels).detach().to(x.device, x.dtype)
        out = torch.where(torch.isfinite(out), out, x)  # a NaN row (0/0 in torchattacks) stays at x
        x_adv = run.x.clone()
        x_adv[slice(None) if idx is None else idx] = out
        run.finish(x_adv)

    @contextmanager
    def _borrowed(self, run: AttackRun, device: torch.device) -> Iterator[None]:
        """Set the torchattacks object (and its sub-attacks) to this call's eps, device and label
        mode under a forked, seeded global RNG; restore every attribute and the RNG afterwards."""
        attrs = {"device": device, "attack_mode": "targeted(label)" if run.targeted else "default",
                 "targeted": run.targeted, "_target_map_function": "function is a string" if run.targeted else None}
        if not math.isinf(run.eps):
            attrs["eps"] = run.eps
        devices = [device] if device.type == "cuda" else []
        amp = self.amp and device.type == "cuda"
        with ExitStack() as stack:
            for atk in _all_attacks(self.ta_attack):
                stack.enter_context(_patched(atk, {k: v for k, v in attrs.items()
                                                   if k != "eps" or hasattr(atk, "eps")}))
            stack.enter_context(torch.random.fork_rng(devices=devices))
            torch.manual_seed(run.generator.initial_seed())
            stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext())
            yield

    def __repr__(self) -> str:
        values = {k: getattr(self.ta_attack, k, None) for k in ("steps", "alpha", "n_queries", "c", "lr")}
        extras = "".join(f", {k}={_show(v)}" for k, v in values.items() if isinstance(v, (int, float)))
        return f"from_torchattacks({self.ta_attack.attack}, eps={_show(self.eps)}, norm={self.norm!r}{extras})"


def _budget(ta_attack: Any) -> tuple[float, str]:
    """``(eps, norm)`` of a torchattacks attack; ``(inf, "linf")`` when it has no L-inf/L2 budget."""
    eps = getattr(ta_attack, "eps", None)
    norm = _TA_NORMS.get(getattr(ta_attack, "norm", None) or "")
    if norm is None and not hasattr(ta_attack, "norm"):
        norm = "l2" if type(ta_attack).__name__.endswith("L2") else "linf"
    if eps is None or norm is None:
        return math.inf, "linf"
    return float(eps), norm


def _all_attacks(ta_attack: Any) -> list[Any]:
    """The attack and, recursively, the sub-attacks torchattacks keeps in ``_attacks`` (AutoAttack...)."""
    found, stack = [], [ta_attack]
    while stack:
        atk = stack.pop()
        if all(atk is not f for f in found):
            found.append(atk)
            stack.extend(getattr(atk, "_attacks", {}).values())
    return found


@contextmanager
def _patched(obj: Any, attrs: dict[str, Any]) -> Iterator[None]:
    """Set attributes of ``obj`` for the duration of the block, then put the old values back."""
    missing = object()
    old = {k: obj.__dict__.get(k, missing) for k in attrs}
    for k, v in attrs.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is missing:
                obj.__dict__.pop(k, None)
            else:
                setattr(obj, k, v)


@contextmanager
def _kept_state(model: torch.nn.Module) -> Iterator[None]:
    """Put every buffer and module mode back afterwards: a torchattacks object set to
    ``set_model_training_mode`` runs the model in train mode (BatchNorm then updates its running
    statistics) and leaves it there, so the rest of the attack would run in train mode too."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in buffers:
                b.copy_(value)
        for m, mode in modes:
            m.training = mode


@contextmanager
def _counting(model: torch.nn.Module, run: AttackRun) -> Iterator[None]:
    """Count per-image forward passes and gradients through the model's output into ``run``, and
    raise :class:`GradientMaskingError` where an input that needs a gradient gets an output without one."""

    def hook(module, inputs, out) -> None:
        if inputs and isinstance(inputs[0], Tensor):
            check_input_gradient(inputs[0], out, model, run.attack.ta_attack)
        if isinstance(out, Tensor):
            run.forwards += len(out)
            if out.requires_grad:
                out.register_hook(lambda g: setattr(run, "backwards", run.backwards + len(g)))

    handle = model.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()

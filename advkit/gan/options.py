"""How a GAN trains: the options of :class:`~advkit.gan.GANTrainer`, checked once and read-only.

The options travel as one object from the trainer's keywords (or ``options=``) to the game, the
checkpoints' run record (:meth:`GANOptions.settings`, :meth:`GANOptions.record`), the ``advkit gan``
command's defaults and its report. A new option is a field here (with its check in ``__post_init__``)
and the code that reads it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..acceleration import compile_options
from ..core import check_number
from ..devices import default_device
from .losses import gan_loss

#: What ``conditional`` may be: unconditional, class labels, or a condition image (pix2pix).
CONDITIONS = (None, "class", "image")
#: Field metadata of the options free to change on resume: they do not shape the run's trajectory.
FREE_ON_RESUME = {"shapes_run": False}


@dataclass(frozen=True)
class GANOptions:
    """The options of a GAN training run, validated when built (``dataclasses.replace`` checks again).

    A bad option raises ``ValueError``/``TypeError`` naming it. Kept normalised: ``betas`` a tuple,
    ``device`` a ``torch.device``; ``mode_seeking`` stays as given (None: see :attr:`mode_seeking_weight`).

    Args:
        loss: the GAN loss's name (see ``advkit.gan.GAN_LOSSES``).
        n_critic: discriminator steps per generator step (>= 1).
        lr_g: the generator's Adam learning rate (> 0).
        lr_d: the discriminator's Adam learning rate (> 0).
        betas: Adam's (beta1, beta2), each in [0, 1). The optimiser defaults are SNGAN's for hinge +
            spectral norm (betas (0, 0.9), two D steps per G step) at twice its learning rate;
            benchmarks/gan_mnist.py measures why.
        conditional: None (data ``(x, _)``, x the samples), ``"class"`` (data ``(x, y)``, G and D take
            the labels), ``"image"`` (pix2pix: data ``(x, y)`` with x the condition image and y the
            target; D sees ``(y, x)`` pairs and G adds ``l1_weight * |y - G(z, x)|``).
        l1_weight: the weight of pix2pix's L1 term (>= 0; ``conditional="image"`` only).
        mode_seeking: the weight of MSGAN's diversity term (see :meth:`GANTrainer.g_loss`); None means
            0.005, or 0 for ``conditional="image"`` (where it must be 0); it keeps the samples of one
            class varied from the first steps on.
        gp_weight: WGAN-GP's penalty weight (>= 0; ``"wgan-gp"`` only).
        clip: WGAN's weight clip (> 0; ``"wgan"`` only).
        ema_decay: the decay of the generator's exponential moving average used for sampling, in
            (0, 1); None turns it off. It ramps up with the step count t as
            ``min(ema_decay, 1 - 1/(ema_ramp * (t + 1)))``, so the EMA averages about the last
            ``ema_ramp`` share of the steps done (StyleGAN2's ramp-up).
        ema_ramp: that share (> 0).
        max_abs_logit: the divergence guard rolls back when D's mean |logit| passes it (a runaway
            discriminator; ``math.inf`` turns this check off) or a loss is non-finite.
        lr_backoff: each rollback multiplies both learning rates by it, in (0, 1).
        max_rollbacks: after that many rollbacks in one ``fit`` the guard gives up (RuntimeError).
        device: where G and D train (None: CUDA when available).
        seed: seeds the noise, the penalty's weights, the batch order and torch's global RNG during fit.
        amp: G's and D's forward passes under bf16 autocast on CUDA (nothing on the CPU), with the
            losses and the penalty's input gradient in float32.
        channels_last: G's and D's 4-D weights in channels_last order for the duration of ``fit``.
        compile: True or a dict of :func:`torch.compile` keyword arguments: G and D compiled for the
            duration of ``fit`` (:func:`advkit.acceleration.accelerated`).
    """

    loss: str = "hinge"
    n_critic: int = 2
    lr_g: float = 4e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    conditional: str | None = None
    l1_weight: float = 0.0
    mode_seeking: float | None = None
    gp_weight: float = 10.0
    clip: float = 0.01
    ema_decay: float | None = 0.999
    ema_ramp: float = 0.2
    max_abs_logit: float = 1e4
    lr_backoff: float = 0.5
    max_rollbacks: int = field(default=5, metadata=FREE_ON_RESUME)
    device: torch.device = field(default=None, metadata=FREE_ON_RESUME)
    seed: int = 0
    amp: bool = field(default=False, metadata=FREE_ON_RESUME)
    channels_last: bool = field(default=False, metadata=FREE_ON_RESUME)
    compile: bool | dict[str, Any] = field(default=False, metadata=FREE_ON_RESUME)

    def __post_init__(self) -> None:
        gan_loss(self.loss)
        for name in ("amp", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}")
        compile_options(self.compile, "compile")
        if self.conditional not in CONDITIONS:
            raise ValueError(f"conditional must be one of {CONDITIONS}; got {self.conditional!r}")
        check_number(self.n_critic, "n_critic", low=1, low_open=False, integer=True)
        check_number(self.max_rollbacks, "max_rollbacks", low_open=False, integer=True)
        for name in ("lr_g", "lr_d", "clip", "ema_ramp"):
            check_number(getattr(self, name), name)
        for name, value in (("l1_weight", self.l1_weight), ("gp_weight", self.gp_weight),
                            ("mode_seeking", self.mode_seeking_weight)):
            check_number(value, name, low_open=False)
        check_number(self.lr_backoff, "lr_backoff", high=1.0, high_open=True)
        if self.max_abs_logit != math.inf:  # inf turns the runaway-discriminator check off
            check_number(self.max_abs_logit, "max_abs_logit")
        if self.ema_decay is not None:
            check_number(self.ema_decay, "ema_decay", high=1.0, high_open=True)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2); got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            check_number(beta, f"betas[{i}]", low_open=False, high=1.0, high_open=True)
        if self.mode_seeking_weight and self.conditional == "image":
            raise ValueError("mode_seeking pairs samples of one condition; "
                             "it is not available with conditional='image'")
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "device", default_device(self.device))

    @property
    def mode_seeking_weight(self) -> float:
        """``mode_seeking``, or for None its default: 0.005, 0 for ``conditional="image"``."""
        if self.mode_seeking is None:
            return 0.0 if self.conditional == "image" else 0.005
        return self.mode_seeking

    def settings(self, batch_size: int) -> dict[str, Any]:
        """The settings that shape the run's trajectory, with the ``batch_size`` of ``fit``: what a
        checkpoint's run record compares on resume (:func:`advkit.checkpoints.run_identity`). Left out,
        so free to change on resume: ``max_rollbacks`` (how many more tries) and how the run computes
        (``device``, ``amp``, ``channels_last``, ``compile``).

        Args:
            batch_size: the batch size ``fit`` was called with.
        """
        free = {f.name for f in fields(self) if not f.metadata.get("shapes_run", True)}
        shaping = {name: value for name, value in self._values().items() if name not in free}
        return {**shaping, "batch_size": batch_size}

    def record(self) -> dict[str, Any]:
        """Every option as a plain value (the device by name, a compile backend function by its repr),
        for checkpoints and JSON reports."""
        return {name: _plain(value) for name, value in self._values().items()}

    def _values(self) -> dict[str, Any]:
        """Every option by name, ``mode_seeking`` resolved."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "mode_seeking": self.mode_seeking_weight}


#: Each option's default, read from :class:`GANOptions` (the ``advkit gan`` command's defaults).
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(GANOptions)}


def _plain(value: Any) -> Any:
    """``value`` as a checkpoint or JSON can hold it: a device by name, a dict's values that are not
    plain (a compile backend function) by their repr."""
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, dict):
        return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v) for k, v in value.items()}
    return value


__all__ = ["CONDITIONS", "DEFAULTS", "GANOptions"]

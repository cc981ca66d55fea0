"""The adversarial-training methods: each one's default attack, training objective, defaults and options.

``TRAINING_METHODS`` maps the names ``adversarial_training`` accepts to a :class:`Method`. Options common to
all methods are in :data:`COMMON`; each method adds its own (``beta`` for TRADES, ...).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..attacks import ATTACK_LOSSES, PGD
from ..core import check_number
from ..validation import check_choice
from .adversaries import Adversary, AttackAdversary, FastAdversary, KLAdversary
from .ema import check_ema
from .losses import adversarial_ce, mart_loss, trades_loss


def number(**bounds: Any) -> Callable[[Any, str], Any]:
    """An option checker: a finite number within ``bounds`` (see :func:`advkit.core.check_number`)."""
    return lambda value, name: check_number(value, name, **bounds)


def choice(*allowed: str) -> Callable[[Any, str], Any]:
    """An option checker: one of ``allowed``."""
    return lambda value, name: check_choice(value, allowed, name)


@dataclass(frozen=True)
class Option:
    """A method option: its default and its checker ``check(value, name) -> value``."""

    default: Any
    check: Callable[[Any, str], Any]


#: Options of every method: ``warmup`` (share of the steps over which the training eps ramps up
#: linearly from 0), ``shift`` (random translation of training images by up to that many pixels),
#: ``weight_decay`` (AdamW's), ``eval_size`` (images of the evaluation data attacked each epoch).
COMMON: dict[str, Option] = {
    "warmup": Option(0.25, number(low_open=False, high=1.0, high_open=True)),
    "shift": Option(0, number(low_open=False, integer=True)),
    "weight_decay": Option(5e-4, number(low_open=False)),
    "eval_size": Option(256, number(low=1, low_open=False, integer=True)),
    "ema": Option(0.0, check_ema),
}

#: ``loss(forward, x, x_adv, y, options)``: ``forward`` is the network's training forward (its logits).
Loss = Callable[[Callable[[Tensor], Tensor], Tensor, Tensor, Tensor, dict], Tensor]


@dataclass(frozen=True)
class Method:
    """One adversarial-training method: ``adversary(model, norm, options, n, amp)`` builds its default
    inner player for n training samples (its forwards under bf16 autocast on CUDA when ``amp``),
    ``loss(forward, x, x_adv, y, options)`` is what the network descends (``forward``: its training
    forward, in train mode), a mean over the batch.
    ``guard``: watch robust accuracy on a held-out batch each epoch and stop at a collapse."""

    name: str
    epochs: int
    lr: float
    adversary: Callable[[nn.Module, str, dict, int, bool], Adversary]
    loss: Loss
    options: dict[str, Option] = field(default_factory=dict)
    guard: bool = False

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every option's value: ``given`` (checked) over the defaults; TypeError for an unknown name."""
        known = {**COMMON, **self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise TypeError(f"method {self.name!r} has no option {', '.join(unknown)}; "
                            f"its options: {', '.join(sorted(known))}")
        return {name: opt.check(given[name], name) if name in given else opt.default for name, opt in known.items()}


def _pgd(model: nn.Module, norm: str, opts: dict, size: int, amp: bool) -> Adversary:
    """PGD up ``opts["loss"]`` (MART, without that option: the cross-entropy)."""
    atk = PGD(model, 0.0, steps=opts["steps"], norm=norm, loss=opts.get("loss", "ce"), early_stop=False, amp=amp)
    return AttackAdversary(lambda eps: atk)


def _fgsm_rs(model: nn.Module, norm: str, opts: dict, size: int, amp: bool) -> Adversary:
    return FastAdversary(model, norm, opts["step"], opts["noise"], opts["start"], size, amp=amp)


def _kl(model: nn.Module, norm: str, opts: dict, size: int, amp: bool) -> Adversary:
    return KLAdversary(model, norm, opts["steps"], amp=amp)


Forward = Callable[[Tensor], Tensor]


def _ce_loss(forward: Forward, x: Tensor, x_adv: Tensor, y: Tensor, opts: dict) -> Tensor:
    return adversarial_ce(forward(x_adv), y)


def _trades_loss(forward: Forward, x: Tensor, x_adv: Tensor, y: Tensor, opts: dict) -> Tensor:
    return trades_loss(forward(x), forward(x_adv), y, opts["beta"])


def _mart_loss(forward: Forward, x: Tensor, x_adv: Tensor, y: Tensor, opts: dict) -> Tensor:
    return mart_loss(forward(x), forward(x_adv), y, opts["beta"])


STEPS = Option(10, number(low=1, low_open=False, integer=True))
#: AWP's ``gamma`` (Wu et al. 2020): each step the weights are perturbed by gamma times their norm, layer
#: by layer, up the loss (0: off; the paper's 5e-3). Off while the eps warms up.
AWP = Option(0.0, number(low_open=False, high=1.0))

TRAINING_METHODS: dict[str, Method] = {
    "pgd": Method("pgd", epochs=20, lr=3e-3, adversary=_pgd, loss=_ce_loss,
                  options={"steps": STEPS, "loss": Option("ce", choice(*ATTACK_LOSSES)), "awp": AWP}),
    "trades": Method("trades", epochs=20, lr=3e-3, adversary=_kl, loss=_trades_loss,
                     options={"steps": STEPS, "beta": Option(6.0, number(low_open=False)), "awp": AWP}),
    "fgsm-rs": Method("fgsm-rs", epochs=20, lr=3e-3, adversary=_fgsm_rs, loss=_ce_loss, guard=True,
                      options={"step": Option(0.5, number()), "noise": Option(0.0, number(low_open=False)),
                               "start": Option("previous", choice("previous", "random")),
                               "guard_drop": Option(0.2, number(high=1.0))}),
    "mart": Method("mart", epochs=20, lr=3e-3, adversary=_pgd, loss=_mart_loss,
                   options={"steps": STEPS, "beta": Option(6.0, number(low_open=False)), "awp": AWP}),
}


def get_method(name: str) -> Method:
    if name not in TRAINING_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, TRAINING_METHODS))}; got {name!r}")
    return TRAINING_METHODS[name]


__all__ = ["COMMON", "TRAINING_METHODS", "Method", "Option", "get_method"]

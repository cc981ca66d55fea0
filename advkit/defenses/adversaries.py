"""The inner player of adversarial training: what crafts each batch's adversarial examples.

An adversary is called as ``adversary(x, y, eps, seed)`` and returns ``x_adv`` inside the eps-ball
around x and [0, 1]. It attacks the live model (the weights of this very step) in eval mode and
leaves it unchanged, as every advkit attack does. :func:`resolve_attack` turns what a user passes
as ``attack=`` (a name, an attack object, a factory ``model -> attack``) into one.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks import ATTACKS, Attack, from_torchattacks
from ..attacks.adapter import is_torchattacks
from ..attacks.pgd import madry_step_size
from ..core import (
    Box,
    L2Step,
    Player,
    SignStep,
    ball,
    flat_norm,
    frozen,
    per_sample,
    play,
)
from .losses import kl_divergence


class Adversary(Protocol):
    def __call__(self, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor: ...


class AttackAdversary:
    """Runs the attack ``build(eps)`` returns at each call (eps changes during the warm-up), at that
    eps and seed, on the live model. A zero budget returns x without running anything."""

    def __init__(self, build: Callable[[float], Attack]):
        self.build = build

    def __call__(self, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
        if eps == 0:
            return x
        return self.build(eps).run(x, y, eps=eps, seed=seed, check_success=False).x_adv


class KLAdversary:
    """TRADES' inner maximisation (Zhang et al. 2019): from x plus N(0, ``start_std``²) noise,
    ``steps`` projected steps of ``alpha``·eps (default 2.5/steps, Madry et al.'s rule) up
    ``KL(p(x) || p(x_adv))``, the clean distribution held fixed."""

    def __init__(self, model: nn.Module, norm: str, steps: int, alpha: float | None = None, start_std: float = 1e-3):
        self.model, self.norm, self.steps = model, norm, steps
        self.alpha = madry_step_size(1.0, steps) if alpha is None else alpha
        self.start_std = start_std

    def __call__(self, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
        if eps == 0:
            return x
        gen = torch.Generator(device=x.device).manual_seed(seed)
        with frozen(self.model), torch.no_grad():
            clean = self.model(x)
        start = x + self.start_std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        return ascend(self.model, x, start.clamp_(0, 1), eps, self.norm, self.alpha * eps, self.steps,
                      lambda x_adv: kl_divergence(clean, self.model(x_adv)).sum())


class FastAdversary:
    """FGSM from a random start (Wong et al. 2020): a uniform point of the ball of radius ``noise``·eps
    around x (clipped to [0, 1]), one step of ``step``·eps up the cross-entropy from there, projected
    onto the eps-ball and [0, 1]. Wong et al. start inside the eps-ball (``noise=1``); a wider start
    (de Jorge et al. 2022 take 2) puts more coordinates on random corners of the ball."""

    def __init__(self, model: nn.Module, norm: str, step: float, noise: float):
        self.model, self.norm, self.step, self.noise = model, norm, step, noise

    def __call__(self, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
        if eps == 0:
            return x
        gen = torch.Generator(device=x.device).manual_seed(seed)
        start = (x + uniform_in_ball(x, self.noise * eps, self.norm, gen)).clamp_(0, 1)
        return ascend(self.model, x, start, eps, self.norm, self.step * eps, 1,
                      lambda x_adv: F.cross_entropy(self.model(x_adv), y, reduction="sum"))


def uniform_in_ball(x: Tensor, radius: float, norm: str, gen: torch.Generator) -> Tensor:
    """One random offset per sample of x: uniform in the L-inf ball of ``radius``, or, under L2, a uniform
    direction times a uniform length up to ``radius`` (as advkit's attacks start)."""
    if norm == "linf":
        return torch.empty_like(x).uniform_(-radius, radius, generator=gen)
    direction = torch.empty_like(x).normal_(generator=gen)
    direction /= flat_norm(direction).clamp_min(1e-12)
    return direction * per_sample(torch.empty(len(x), device=x.device, dtype=x.dtype).uniform_(0, radius, generator=gen), x)


def ascend(model: nn.Module, x: Tensor, start: Tensor, eps: float, norm: str, alpha: float, steps: int,
           objective: Callable[[Tensor], Tensor]) -> Tensor:
    """``steps`` moves of the inner player from ``start``: steepest ascent of ``objective(x_adv)`` (signed
    steps of ``alpha`` under L-inf, normalised ones under L2), each projected onto the eps-ball around x
    and [0, 1], through :func:`advkit.core.play`; the model in eval mode and left as it was."""
    feasible = ball(norm, x, eps) & Box(0.0, 1.0)
    step = SignStep(alpha) if norm == "linf" else L2Step(alpha)
    x_adv = start.detach().clone().requires_grad_(True)
    with frozen(model), torch.enable_grad():
        play(Player([x_adv], step, feasible, maximize=True), lambda: objective(x_adv), k=steps)
    return x_adv.detach()


def resolve_attack(attack: Any, model: nn.Module, norm: str, default: Adversary) -> Adversary:
    """The adversary for ``attack=``: None gives ``default``; a name from ``advkit.attacks.ATTACKS``
    builds that attack on ``model`` (every sample pushed for all its steps: ``early_stop=False``);
    an advkit or torchattacks attack object must attack ``model`` itself; any other callable is a
    factory ``model -> attack`` called for every batch. The attack's eps is replaced by the training
    eps of the step. TypeError/ValueError (naming ``attack``) for anything else."""
    if attack is None:
        return default
    if isinstance(attack, str):
        if attack not in ATTACKS:
            raise ValueError(f"attack must be one of {', '.join(map(repr, ATTACKS))}, an attack object or a factory "
                             f"model -> attack; got {attack!r}")
        atk = ATTACKS[attack](model, 0.0, norm=norm, early_stop=False)
        return AttackAdversary(lambda eps: atk)
    if isinstance(attack, Attack) or is_torchattacks(attack):
        atk = _checked(attack, model, norm)
        return AttackAdversary(lambda eps: atk)
    if callable(attack) and not isinstance(attack, nn.Module):
        _checked(attack(model), model, norm, "the attack factory's result")
        return AttackAdversary(lambda eps: _checked(attack(model), model, norm, "the attack factory's result"))
    raise TypeError(f"attack must be None, an attack name, an advkit or torchattacks attack, or a factory "
                    f"model -> attack; got {type(attack).__name__}")


def _checked(attack: Any, model: nn.Module, norm: str, what: str = "attack") -> Attack:
    """``attack`` as an advkit Attack on ``model`` under ``norm`` (torchattacks objects wrapped)."""
    if is_torchattacks(attack):
        attack = from_torchattacks(attack, early_stop=False)
    if not isinstance(attack, Attack):
        raise TypeError(f"{what} must be an advkit or torchattacks attack, got {type(attack).__name__}")
    if not any(m is model for m in attack.model.modules()):
        raise ValueError(f"{what} attacks another model than the one being trained; build it on that model, "
                         "or pass a factory model -> attack")
    if attack.norm != norm:
        raise ValueError(f"{what} works under norm={attack.norm!r} but training is under norm={norm!r}")
    return attack


__all__ = ["Adversary", "AttackAdversary", "FastAdversary", "KLAdversary", "ascend", "resolve_attack", "uniform_in_ball"]

"""The inner player of adversarial training: what crafts each batch's adversarial examples.

An adversary is called as ``adversary(x, y, eps, seeds, index)`` and returns ``x_adv`` inside the
eps-ball around x and [0, 1]. It attacks the live model (the weights of this very step) in eval mode
and leaves it unchanged, as every advkit attack does. :func:`resolve_attack` turns what a user passes
as ``attack=`` (a name, an attack object, a factory ``model -> attack``) into one.

Every random draw is made per sample, from the sample's own seed, so a sample's adversarial example
does not depend on which other samples share its batch: a batch split over the ranks of a process
group gets what one process would make of it. (An attack that does not declare its draws per sample,
:attr:`advkit.attacks.Attack.per_sample`, such as Square or torchattacks', may seed the whole call from
its first sample's seed: in a process group :func:`resolve_attack` warns.) ``amp``: the adversary's forwards
run under bf16 autocast on CUDA (:func:`advkit.acceleration.autocast`); gradients, steps and
projections stay in float32.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..acceleration import autocast
from ..attacks import ATTACKS, Attack, from_torchattacks
from ..attacks.adapter import is_torchattacks
from ..attacks.capabilities import capability
from ..attacks.pgd import madry_step_size
from ..core import Box, Player, frozen, play
from ..core.norms import Norm, get_norm
from ..distributed import gather_rows, is_distributed
from ..rng import sample_draw
from .losses import kl_divergence

log = logging.getLogger(__name__)


class Adversary(Protocol):
    """``adversary(x, y, eps, seeds, index)``: adversarial examples for the batch ``(x, y)``, whose rows
    are the training samples numbered ``index``; ``seeds`` (one integer per row) seed each row's draws."""

    def __call__(self, x: Tensor, y: Tensor, eps: float, seeds: Tensor, index: Tensor) -> Tensor: ...


class AttackAdversary:
    """Runs the attack ``build(eps)`` returns at each call (eps changes during the warm-up), at that
    eps with the per-sample ``seeds``, on the live model. A zero budget returns x without running anything.
    An attack that learns (``needs_training``, such as :class:`advkit.attacks.AdvGAN`) first trains
    ``adapt_steps`` steps (its ``adapt(x, steps)``) on the batch against the current weights, so it
    keeps up with the model it attacks: the min-max game with a third player."""

    def __init__(self, build: Callable[[float], Attack], adapt_steps: int = 1):
        self.build, self.adapt_steps = build, adapt_steps

    def __call__(self, x: Tensor, y: Tensor, eps: float, seeds: Tensor, index: Tensor) -> Tensor:
        if eps == 0:
            return x
        attack = self.build(eps)
        if capability(attack, "needs_training") and self.adapt_steps:
            attack.adapt(x, steps=self.adapt_steps)
        return attack.run(x, y, eps=eps, seed=seeds, check_success=False).x_adv


class KLAdversary:
    """TRADES' inner maximisation (Zhang et al. 2019): from x plus N(0, ``start_std``²) noise,
    ``steps`` projected steps of ``alpha``·eps (default Madry et al.'s rule, 2.5/steps; L1: 10/steps) up
    ``KL(p(x) || p(x_adv))``, the clean distribution held fixed."""

    def __init__(self, model: nn.Module, norm: str, steps: int, alpha: float | None = None, start_std: float = 1e-3,
                 amp: bool = False):
        self.model, self.norm, self.steps, self.amp = model, get_norm(norm), steps, amp
        self.alpha = madry_step_size(1.0, steps, norm) if alpha is None else alpha
        self.start_std = start_std

    def __call__(self, x: Tensor, y: Tensor, eps: float, seeds: Tensor, index: Tensor) -> Tensor:
        if eps == 0:
            return x
        with frozen(self.model), torch.no_grad():
            clean = logits(self.model, x, self.amp)
        start = x + self.start_std * sample_draw(x, seeds)(x.shape[1:], lambda t, g: t.normal_(generator=g))
        return ascend(self.model, x, start, eps, self.norm, self.alpha * eps, self.steps,
                      lambda x_adv: kl_divergence(clean, logits(self.model, x_adv, self.amp)).sum())


class FastAdversary:
    """One FGSM step of ``step``·eps up the cross-entropy, projected onto the eps-ball and [0, 1].

    It starts where ``start`` says: ``"random"`` (Wong et al. 2020, FGSM-RS) at a uniform point of the
    ball of radius ``noise``·eps around x; ``"previous"`` (Zheng et al. 2020, ATTA; Jia et al. 2022,
    FGSM-PGI) at the sample's own adversarial perturbation from its previous visit, cut to the
    current ball, plus that noise; a sample's first visit starts at random in the eps-ball. Carried
    over epochs, one step a visit accumulates into a many-step attack at the price of one, which
    keeps FGSM training from overfitting to its own single step. The memory (one perturbation per
    training sample, ``size`` of them) is part of :meth:`state_dict`, so resumed runs are exact.
    In a process group each rank writes the rows of its own samples; :meth:`synchronize` (called by
    the training at the end of every epoch, before its checkpoint) gives every rank all of them."""

    def __init__(self, model: nn.Module, norm: str, step: float, noise: float, start: str = "random",
                 size: int = 0, amp: bool = False):
        self.model, self.norm, self.step, self.noise, self.start = model, get_norm(norm), step, noise, start
        self.size, self.amp = size, amp
        self.memory: Tensor | None = None  # (size, *sample shape) perturbations of the last visits
        self.seen: Tensor | None = None  # (size,) bool: visited before
        self.written: list[Tensor] = []  # in a process group: samples whose rows this rank wrote since the sync

    def __call__(self, x: Tensor, y: Tensor, eps: float, seeds: Tensor, index: Tensor) -> Tensor:
        if eps == 0:
            return x
        draw = sample_draw(x, seeds)
        delta = self.norm.random_delta(x, self.noise * eps, draw) if self.noise else torch.zeros_like(x)
        if self.start == "previous":
            self._allocate(x)
            seen, previous = self.seen[index], self.memory[index].to(x.dtype)
            if seen.all():  # every epoch after the first: no random start to draw
                delta += previous
            else:
                first = self.norm.random_delta(x, eps, draw)
                delta += torch.where(seen.view(-1, *[1] * (x.ndim - 1)), previous, first)
        x_adv = ascend(self.model, x, x + delta, eps, self.norm, self.step * eps, 1,
                       lambda x_adv: F.cross_entropy(logits(self.model, x_adv, self.amp), y, reduction="sum"))
        if self.start == "previous":
            self.memory[index] = (x_adv - x).to(self.memory.dtype)
            self.seen[index] = True
            if is_distributed():
                self.written.append(index)
        return x_adv

    def synchronize(self) -> None:
        """In a process group, copy every rank's rows written since the last call into every rank's
        memory (each sample is visited by one rank per epoch, so no row is written twice)."""
        written, self.written = self.written, []
        if not is_distributed() or self.memory is None:
            return
        mine = torch.cat(written) if written else torch.zeros(0, dtype=torch.long, device=self.memory.device)
        index = gather_rows(mine).to(self.memory.device)
        self.memory[index] = gather_rows(self.memory[mine]).to(self.memory.device)
        self.seen[index] = True

    def _allocate(self, x: Tensor) -> None:
        if self.memory is None:
            self.memory = torch.zeros((self.size, *x.shape[1:]), device=x.device, dtype=x.dtype)
            self.seen = torch.zeros(self.size, dtype=torch.bool, device=x.device)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.memory is None else {"memory": self.memory, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.memory, self.seen = state["memory"], state["seen"]


class LayerScaledStep:
    """AWP's step rule: each weight of two or more dimensions (convolution and linear weights) moves by
    ``gamma * ||w||`` along its own gradient's direction ``g / ||g||`` (Frobenius norms, layer by layer);
    biases and normalisation weights stay. A zero gradient gives a zero step."""

    def __init__(self, gamma: float):
        self.gamma = gamma

    def __call__(self, params, grads, ascend: bool) -> None:
        for p, g in zip(params, grads, strict=True):
            if p.ndim > 1:
                p.add_(g * (self.gamma * p.norm() / g.norm().clamp_min(1e-20)), alpha=1.0 if ascend else -1.0)


class WeightAdversary:
    """Adversarial weight perturbation (Wu et al. 2020): the network's own inner player. After the
    inputs' attack, :meth:`perturb` takes one :class:`LayerScaledStep` of size ``gamma`` UP the loss
    (``player``: a maximising player on the network's trainable parameters, a
    :class:`~advkit.core.BackwardPlayer` under DistributedDataParallel, so that every rank gets the
    gradient of the global batch and the same perturbation). The loss and its gradient are then taken
    at ``w + v``, and :meth:`restore` puts back the saved tensors (exactly ``w``, no float drift)
    before the optimizer steps. The forward that finds ``v`` leaves the module's buffers (BatchNorm's
    running statistics) as they were: they follow the forward at ``w + v`` only, as on the
    reference's proxy network."""

    def __init__(self, module: nn.Module, player: Player):
        self.module, self.player = module, player
        self.saved: list[Tensor] | None = None

    def perturb(self, loss: Callable[[], Tensor]) -> None:
        """Add the perturbation that ascends ``loss()`` (the method's loss at the current weights)."""
        buffers = [b.clone() for b in self.module.buffers()]
        value = loss()
        self.saved = [p.detach().clone() for p in self.player.params]
        self.player.update(value)
        with torch.no_grad():
            for b, old in zip(self.module.buffers(), buffers, strict=True):
                b.copy_(old)

    def restore(self) -> None:
        """Put the weights saved by :meth:`perturb` back (nothing to do when none are perturbed)."""
        if self.saved is None:
            return
        with torch.no_grad():
            for p, old in zip(self.player.params, self.saved, strict=True):
                p.copy_(old)
        self.saved = None


class Restoring:
    """A step rule that first undoes ``weights``' perturbation, then steps with ``step``: the gradients
    were taken at ``w + v``, the step is taken from ``w``."""

    def __init__(self, step, weights: WeightAdversary):
        self.step, self.weights = step, weights

    def __call__(self, params, grads, ascend: bool) -> None:
        self.weights.restore()
        self.step(params, grads, ascend)


def logits(model: nn.Module, x: Tensor, amp: bool) -> Tensor:
    """``model(x)`` in float32, its forward under bf16 autocast when ``amp`` and x is on CUDA."""
    with autocast(x.device, amp):
        return model(x).float()


def ascend(model: nn.Module, x: Tensor, start: Tensor, eps: float, norm: Norm, alpha: float, steps: int,
           objective: Callable[[Tensor], Tensor]) -> Tensor:
    """``steps`` moves of the inner player from ``start`` projected onto the eps-ball around x and
    [0, 1]: steepest ascent of ``objective(x_adv)`` under ``norm`` in steps of ``alpha``, each projected
    again, through :func:`advkit.core.play`; the model in eval mode and left as it was."""
    feasible = norm.ball(x, eps) & Box(0.0, 1.0)
    x_adv = start.detach().clone()
    feasible(x_adv)
    x_adv.requires_grad_(True)
    with frozen(model), torch.enable_grad():
        play(Player([x_adv], norm.step(alpha), feasible, maximize=True), lambda: objective(x_adv), k=steps)
    return x_adv.detach()


def resolve_attack(attack: Any, model: nn.Module, norm: str, default: Adversary, amp: bool = False) -> Adversary:
    """The adversary for ``attack=``: None gives ``default``; a name from ``advkit.attacks.ATTACKS``
    builds that attack on ``model`` (every sample pushed for all its steps: ``early_stop=False``;
    ``amp`` as given); an advkit or torchattacks attack object must attack ``model`` itself; any other
    callable is a factory ``model -> attack`` called for every batch (objects and factories keep their
    own ``amp``). The attack's eps is replaced by the training eps of the step. TypeError/ValueError
    (naming ``attack``) for anything else. In a process group, an attack that does not declare its
    draws per sample (``per_sample``) is warned about: the ranks' shares of a batch may not get what
    one process would make of the whole batch."""
    if attack is None:
        return default
    if isinstance(attack, str):
        if attack not in ATTACKS:
            raise ValueError(f"attack must be one of {', '.join(map(repr, ATTACKS))}, an attack object or a factory "
                             f"model -> attack; got {attack!r}")
        if norm not in ATTACKS[attack].norms:
            raise ValueError(f"attack {attack!r} works under norm {' or '.join(map(repr, ATTACKS[attack].norms))} "
                             f"but training is under norm={norm!r}")
        atk = ATTACKS[attack](model, 0.0, norm=norm, early_stop=False, amp=amp)
        adversary = AttackAdversary(lambda eps: atk)
    elif isinstance(attack, Attack) or is_torchattacks(attack):
        atk = _checked(attack, model, norm)
        adversary = AttackAdversary(lambda eps: atk)
    elif callable(attack) and not isinstance(attack, nn.Module):
        atk = _checked(attack(model), model, norm, "the attack factory's result")
        adversary = AttackAdversary(lambda eps: _checked(attack(model), model, norm, "the attack factory's result"))
    else:
        raise TypeError(f"attack must be None, an attack name, an advkit or torchattacks attack, or a factory "
                        f"model -> attack; got {type(attack).__name__}")
    if is_distributed() and not atk.per_sample:
        log.warning("adversarial training in a process group: %s does not declare its draws per sample "
                    "(per_sample), so a batch split over the ranks may not get the adversarial examples one "
                    "process would make", type(atk).__name__)
    return adversary


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


__all__ = ["Adversary", "AttackAdversary", "FastAdversary", "KLAdversary", "LayerScaledStep", "Restoring",
           "WeightAdversary", "ascend", "logits", "resolve_attack"]

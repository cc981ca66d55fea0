"""The attack base class: validation, the frozen model, targets, and the validity guarantee.

Subclasses implement :meth:`Attack.perturb` (usually a few lines around :func:`advkit.core.play`)
and get, from the final :meth:`Attack.run`: input checks before any work, the model borrowed
unchanged, labels from the model's predictions when ``y`` is None, target selection, per-sample
early stopping and best tracking through :class:`AttackRun`, and a result projected onto the eps-ball
and [0, 1] with its success re-checked.
"""
from __future__ import annotations

import itertools
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator, Literal, final, get_args

import torch
from torch import Tensor, nn

from ..core import NORMS, Box, Norm, check_number, frozen, get_norm
from ..core.norms import Draw
from ..rng import sample_draw
from ..validation import (
    check_choice,
    check_classes_for_loss,
    check_eps,
    check_images,
    check_label_range,
    check_labels,
    check_logits,
    fits_model,
)
from .errors import check_input_gradient
from .losses import ATTACK_LOSSES, sample_loss, succeeded

#: How an attack chooses its targets by itself: not at all (False: untargeted, or ``target=`` given
#: at the call), a random wrong class per sample, or the class the model ranks lowest.
TargetMode = Literal[False, "random", "least-likely"]
TARGET_MODES: tuple[TargetMode, ...] = get_args(TargetMode)
#: The three ways targets are chosen: ``target=`` at the call, or the ``targeted`` modes.
TARGET_SOURCES = ("given", "random", "least-likely")


def check_target_mode(targeted) -> TargetMode:
    """``targeted`` as one of :data:`TARGET_MODES`; ``True`` is refused with what to pass instead."""
    if targeted is True:
        raise ValueError("targeted=True does not say how to choose the targets: pass targeted='random' (a random "
                         "wrong class per sample) or targeted='least-likely' (the class the model ranks lowest), "
                         "or give the targets yourself with target= at the call")
    return check_choice(targeted, TARGET_MODES, "targeted")


def model_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype of the model's first floating parameter or buffer (``default`` for a model with none)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return default


@dataclass(repr=False)
class AttackResult:
    """What one attack call produced: the adversarial batch, which samples it fooled (checked on
    the returned tensor) and the cost in per-image forward and backward passes."""

    x_adv: Tensor
    success: Tensor
    forwards: int
    backwards: int

    def __repr__(self) -> str:
        n, fooled = len(self.success), int(self.success.sum())
        rate = f"{fooled / n:.1%}" if n else "n/a"
        return (f"AttackResult(n={n}, success={fooled}/{n} ({rate}), forwards={self.forwards}, "
                f"backwards={self.backwards})")


class AttackRun:
    """The state of one attack call: labels, the loss, and each sample's best iterate so far.

    A sample that succeeds keeps that iterate and stops moving (``early_stop``); the others carry
    their highest-loss iterate across restarts. ``objective(x_adv)`` is the closure
    :func:`advkit.core.play` calls: it forwards only the samples still active. ``feasible`` is the
    projection onto the eps-ball around x and the [0, 1] box, the set every iterate must stay in.
    """

    def __init__(self, attack: "Attack", x: Tensor, eps: float, labels: Tensor | None, target: Tensor | None,
                 generator: torch.Generator, sample_seeds: Tensor | None = None, x_init: Tensor | None = None):
        self.attack, self.x, self.eps, self.generator, self.x_init = attack, x, eps, generator, x_init
        # unbounded (a minimum-norm attack at eps=inf): the box alone, so a result is returned bit for bit
        self.feasible = attack.geometry.ball(x, eps) & Box(0.0, 1.0) if math.isfinite(eps) else Box(0.0, 1.0)
        # on x's device like every per-sample tensor of the run, so rows index it with the same indices
        self.sample_seeds = None if sample_seeds is None else sample_seeds.to(x.device)
        self._sample_draw: Draw | None = None  # made at the first draw
        self.loss_fn = sample_loss(attack.loss)
        self.targeted = target is not None or bool(attack.targeted)
        self._given_labels, self._given_target = labels, target
        self.labels: Tensor | None = None  # the classes the loss uses: true labels or targets
        self.true_labels: Tensor | None = None
        self.num_classes = 0
        self.success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.best = x.clone()
        self.best_loss = torch.full((len(x),), float("-inf"), device=x.device)
        self.unjudged = torch.zeros(len(x), dtype=torch.bool, device=x.device)  # kept without a forward
        self.forwards = self.backwards = 0

    # -- forward passes -------------------------------------------------------------------
    def logits(self, x: Tensor, backward: bool = False) -> Tensor:
        """The model's logits in float32 (under bf16 autocast when the attack asks for AMP on CUDA).
        Counts one forward pass per row of ``x``, and with ``backward`` (the caller differentiates a
        loss of these logits) one backward pass per row too."""
        amp = self.attack.amp and x.device.type == "cuda"
        with fits_model(x), torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
            out = self.attack.model(x)
        self.forwards += len(x)
        check_input_gradient(x, out, self.attack.model, self.attack)
        if backward:
            self.backwards += len(x)
        return out.float() if isinstance(out, Tensor) else out

    def resolve(self, logits: Tensor) -> None:
        """From the clean logits: validate the output, fix labels and targets, mark clean successes."""
        logits = check_logits(logits, len(self.x))
        self.num_classes = logits.shape[1]
        check_classes_for_loss(self.attack.loss, self.num_classes)
        pred = logits.detach().argmax(1)
        y = pred if self._given_labels is None else self._given_labels
        check_label_range(y, self.num_classes)
        self.true_labels = y
        if self._given_target is not None:
            check_label_range(self._given_target, self.num_classes, "target")
            self.labels = self._given_target
        elif self.attack.targeted == "least-likely":
            self.labels = logits.detach().argmin(1)
        elif self.attack.targeted == "random":
            offset = self.draw((), lambda t, g: t.random_(1, self.num_classes, generator=g)).long()
            self.labels = (y + offset.to(y.device)) % self.num_classes
        else:
            self.labels = y
        self.success |= succeeded(logits.detach(), self.labels, self.targeted)

    def forward_clean(self) -> None:
        """One no-grad forward of the clean batch, resolving labels and targets, unless a forward
        already did (attacks that start away from x call this first)."""
        if self.labels is None:
            self.clean_logits()

    @torch.no_grad()
    def clean_logits(self) -> Tensor:
        """One no-grad forward of the clean batch, resolving labels and targets from it; its logits."""
        logits = self.logits(self.x)
        self.resolve(logits)
        return logits

    def ranked_targets(self, n: int) -> Iterator[Tensor]:
        """The classes the clean model ranks 2nd, 3rd, ... up to the (n + 1)-th (at most the last), one
        per sample, in turn, while any sample is still unbroken (one clean forward first, resolving labels).
        Ranked as AutoAttack ranks them, ties included: the k-th from the end of an ascending sort."""
        ranked = self.clean_logits().sort(1).indices
        for k in range(2, min(n + 1, self.num_classes) + 1):
            if bool(self.success.all()):
                return
            yield ranked[:, -k]

    def delegate(self, attack: "Attack", idx: Tensor, **call) -> AttackResult:
        """``attack.run`` on rows ``idx`` of the batch (their true labels, at this run's eps; ``call``:
        its other arguments), its passes counted as this run's; the caller merges the result."""
        res = attack.run(self.x[idx], self.true_labels[idx], eps=self.eps, **call)
        self.forwards, self.backwards = self.forwards + res.forwards, self.backwards + res.backwards
        return res

    # -- tracking ---------------------------------------------------------------------------
    def active(self) -> Tensor | None:
        """Indices of samples still to attack (None: all of them)."""
        if not self.attack.early_stop:
            return None
        idx = (~self.success).nonzero().squeeze(1)
        return None if len(idx) == len(self.x) else idx

    def observe(self, idx: Tensor | None, x_now: Tensor, logits: Tensor, losses: Tensor) -> None:
        """Record the iterate ``x_now`` (rows ``idx``): successes freeze, otherwise higher loss wins."""
        labels = self.labels if idx is None else self.labels[idx]
        self.record(idx, x_now, succeeded(logits, labels, self.targeted), losses)

    def record(self, idx: Tensor | None, x_now: Tensor, hit: Tensor, losses: Tensor) -> None:
        """Record the iterate ``x_now`` (rows ``idx``) judged ``hit`` (fooled) with ``losses``:
        successes freeze, otherwise higher loss wins."""
        old_success = self.success if idx is None else self.success[idx]
        old_loss = self.best_loss if idx is None else self.best_loss[idx]
        frozen_success = old_success & self.attack.early_stop
        better = (hit & ~old_success) | ((hit == old_success) & (losses > old_loss) & ~frozen_success)
        mask = better.view(-1, *([1] * (x_now.ndim - 1)))
        if idx is None:
            self.best = torch.where(mask, x_now, self.best)
            self.best_loss = torch.where(better, losses, self.best_loss)
            self.success = self.success | hit
        else:
            self.best[idx] = torch.where(mask, x_now, self.best[idx])
            self.best_loss[idx] = torch.where(better, losses, old_loss)
            self.success[idx] = old_success | hit

    def objective(self, x_adv: Tensor, on_losses: Callable[[Tensor | None, Tensor], None] | None = None
                  ) -> Callable[[], Tensor | None]:
        """The closure for ``play``: summed per-sample loss of the active rows of ``x_adv``
        (None once every sample has succeeded, which ends the game). ``on_losses(idx, losses)``,
        when given, sees each forward's per-sample losses (e.g. for a step-size schedule)."""

        def loss() -> Tensor | None:
            if self.labels is None and self.attack.eot > 1:  # the clean forward cannot double as EOT's draws
                self.clean_logits()
            if self.labels is None:  # first step from x itself: this forward is the clean one
                logits = self.logits(x_adv)
                self.resolve(logits)
                idx = self.active()
                if idx is not None:  # clean successes drop out before the gradient
                    logits = logits[idx]
                xa = x_adv if idx is None else x_adv[idx]
            else:
                idx = self.active()
                if idx is not None and len(idx) == 0:
                    return None
                xa = x_adv if idx is None else x_adv[idx]
                if self.attack.eot > 1:
                    return self._expected_loss(idx, xa, on_losses)
                logits = self.logits(xa)
            labels = self.labels if idx is None else self.labels[idx]
            losses = self.loss_fn(logits, labels, self.targeted)
            self.observe(idx, xa.detach(), logits.detach(), losses.detach())
            if on_losses is not None:
                on_losses(idx, losses.detach())
            self.backwards += len(xa)
            return losses.sum()

        return loss

    def _expected_loss(self, idx: Tensor | None, xa: Tensor,
                       on_losses: Callable[[Tensor | None, Tensor], None] | None) -> Tensor:
        """Expectation over transformation (Athalye et al. 2018): the summed per-sample loss of ``xa``
        (rows ``idx`` of the iterate) averaged over ``attack.eot`` forwards (see :meth:`expected`). The
        iterate is recorded with that mean loss, as a success only where every draw was fooled (see :meth:`judge`)."""
        labels = self.labels if idx is None else self.labels[idx]
        out, mean, fooled = self.expected(xa, lambda logits: (self.loss_fn(logits, labels, self.targeted),
                                                              succeeded(logits.detach(), labels, self.targeted)))
        self.record(idx, xa.detach(), fooled, mean)
        if on_losses is not None:
            on_losses(idx, mean)
        return out

    def expected(self, xa: Tensor, term: Callable[[Tensor], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        """A per-sample ``term`` of the logits of ``xa`` over ``attack.eot`` forwards, one graph at a time
        (each draw's gradient is taken before the next forward). ``term(logits)`` gives the per-sample values
        (differentiable) and whether the draw fooled each sample. Returns a scalar that carries the mean of
        the draws' gradients as its gradient and the summed mean values as its value, the mean values, and
        which samples every draw fooled."""
        draws = self.attack.eot
        if draws == 1:  # one draw: its own values and gradient
            values, hit = term(self.logits(xa, backward=True))
            return values.sum(), values.detach(), hit
        total = torch.zeros(len(xa), device=xa.device)
        fooled = torch.ones(len(xa), dtype=torch.bool, device=xa.device)
        grad = torch.zeros_like(xa)
        for k in range(draws):
            values, hit = term(self.logits(xa, backward=True))
            fooled &= hit
            total += values.detach()
            if k + 1 < draws:  # the last draw's gradient comes from the caller's own autograd call
                grad += torch.autograd.grad(values.sum(), xa)[0]
        mean = total / draws
        out = (values.sum() + (xa * grad).sum()) / draws
        return out - out.detach() + mean.sum(), mean, fooled

    @torch.no_grad()
    def judge(self, xa: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Rows ``xa`` against ``labels`` over ``attack.eot`` forwards: fooled by every draw (one draw
        alone, fooled by chance, would freeze a sample the search should keep pushing), and the mean loss."""
        fooled = torch.ones(len(xa), dtype=torch.bool, device=xa.device)
        total = torch.zeros(len(xa), device=xa.device)
        for _ in range(self.attack.eot):
            logits = self.logits(xa)
            fooled &= succeeded(logits, labels, self.targeted)
            total += self.loss_fn(logits, labels, self.targeted)
        return fooled, total / self.attack.eot

    @torch.no_grad()
    def finish(self, x_adv: Tensor, evaluate: bool = True) -> None:
        """Record the last iterate (after the last step) of the samples not yet fooled.

        ``evaluate=False`` when nothing later needs its loss (no restart follows): the iterate is
        kept unjudged, without a forward, and :meth:`Attack.run` checks it only if asked to.
        """
        idx = (~self.success).nonzero().squeeze(1)
        if len(idx) == 0:
            return
        if not evaluate:
            self.best[idx] = x_adv[idx].detach()
            self.unjudged[idx] = True
            return
        xa = x_adv[idx].detach()
        if self.attack.eot > 1:
            self.record(idx, xa, *self.judge(xa, self.labels[idx]))
            return
        logits = self.logits(xa)
        self.observe(idx, xa, logits, self.loss_fn(logits, self.labels[idx], self.targeted))

    def start(self, random: bool = True) -> Tensor:
        """A fresh leaf tensor to optimise from: the call's warm start ``x_init`` the first time
        (projected onto the ball and [0, 1]); else, with ``random``, a random point of the ball
        clipped to [0, 1] (the norm's :meth:`~advkit.core.Norm.random_start`); else x."""
        if self.x_init is None and not random:
            return self.x.clone().requires_grad_(True)
        self.forward_clean()  # the start is not x, so the clean forward cannot double as the first step's
        if self.x_init is not None:
            x0, self.x_init = self.x_init.detach().clone(), None
            self.feasible(x0)
            return x0.requires_grad_(True)
        return self.attack.geometry.random_start(self.x, self.eps, self.draw).requires_grad_(True)

    def draw(self, row_shape: tuple[int, ...], fill: Callable[[Tensor, torch.Generator], Tensor]) -> Tensor:
        """Random rows of ``row_shape``, one per sample, filled in place by ``fill(tensor, generator)``:
        from the run's generator, or row by row from per-sample generators when the call gave
        per-sample seeds (then a sample's draws do not depend on which samples share its batch)."""
        if self.sample_seeds is None:
            g = self.generator
            rows = torch.empty((len(self.x), *row_shape), device=g.device, dtype=self.x.dtype)
            return fill(rows, g).to(self.x.device)
        if self._sample_draw is None:
            self._sample_draw = sample_draw(self.x, self.sample_seeds)
        return self._sample_draw(row_shape, fill)


class Attack:
    """Base class. ``atk(x, y)`` returns the adversarial batch; ``atk.run(x, y)`` also says which
    samples it fooled and what it cost.

    ``y=None`` attacks the model's own predictions. ``targeted``: False, "random" (a random wrong
    class per sample) or "least-likely" (the class the model ranks lowest); or pass ``target=`` to
    the call to choose the classes yourself. Same ``seed``, same result on the CPU.
    """

    # -- capabilities: what the attack can do, read by evaluate, its checks and sharding, and the
    # defenses, never guessed from the name it is reported under (attacks/capabilities.py) --------
    #: The norms the attack works in (names in :data:`advkit.core.NORMS`); ``norm`` must be one of them.
    norms: tuple[str, ...] = tuple(NORMS)
    #: The losses the attack can climb (names in :data:`advkit.attacks.ATTACK_LOSSES`); ``loss`` must be one of them.
    losses: tuple[str, ...] = tuple(ATTACK_LOSSES)
    #: True for attacks whose search starts from one point (``AttackRun.start``): they take ``run(x_init=...)``.
    warm_starts: bool = False
    #: How targets may be chosen for this attack (a subset of :data:`TARGET_SOURCES`); others are refused.
    targets: tuple[str, ...] = TARGET_SOURCES
    #: Whether the attack follows the model's input gradient (during the call, or while it is trained
    #: first). False: it only queries the model's outputs, so it finds what misleading gradients hide
    #: (the checks read a gradient-free curve as their gradient-free attack). An ensemble: any member.
    uses_gradients: bool = True
    #: Whether every random draw (from the per-sample seeds ``run(seed=tensor)`` takes) and every
    #: decision (early stopping, step sizes) is per sample, so a sample's result does not depend on
    #: the batch it is attacked in and ``evaluate`` may shard the attack by sample. False promises
    #: nothing (the safe default: the attack is then sharded by batch); a subclass that draws per
    #: batch must set it back to False. An ensemble: every member.
    per_sample: bool = False
    #: Whether the attack must be trained before it attacks (AdvGAN): it has ``fit(data, ...)`` and
    #: ``adapt(x, steps)``, which adversarial training calls on each batch to keep up with the model.
    #: An ensemble: any member.
    needs_training: bool = False
    #: Whether the attack's gradients come from :meth:`AttackRun.objective`, so ``eot`` > 1 averages
    #: each gradient over that many forwards (expectation over transformation, for randomized models).
    supports_eot: bool = False
    #: Forwards per gradient (set by ``__init__``; 1: a single draw).
    eot: int = 1
    #: Whether the attack searches for each sample's smallest adversarial perturbation (HopSkipJump, FAB,
    #: CW): ``run(eps=math.inf)`` returns it, so a sample is robust at eps exactly when the norm of the
    #: perturbation found exceeds eps, and ``evaluate`` reads a whole eps grid off one such run.
    minimum_norm: bool = False
    #: Whether the attack reads only the model's top-1 answer (a decision-based attack: HopSkipJump).
    label_only: bool = False
    #: Whether the attack crafts its examples on another model (a surrogate) and only judges them on the
    #: attacked one (:class:`~advkit.attacks.Transfer`): its curve measures how well examples transfer, not
    #: what the model's gradients hide, so the checks never take it for their gradient-free attack.
    transfer: bool = False
    #: The settings ``repr`` shows after eps and norm: attribute names, in order.
    settings: tuple[str, ...] = ()
    #: Settings that default to a rule of eps: ``name -> (the rule as shown, or a function of the attack
    #: giving it; rule(attack, eps))``, used where the attribute is None (see :meth:`setting`).
    derived: ClassVar[dict[str, tuple[str | Callable[[Attack], str], Callable[[Attack, float], float]]]] = {}

    def __init__(self, model: nn.Module, eps: float | None, *, norm: str = "linf", loss: str = "ce",
                 targeted: TargetMode = False, early_stop: bool = True, seed: int = 0, amp: bool = False,
                 eot: int = 1):
        """Check and keep the settings every attack shares; errors name the argument.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget, the radius of the ball in ``norm`` (>= 0); None for a :attr:`minimum_norm`
                attack: unbounded (``math.inf``), its result the smallest perturbation it finds.
            norm: the threat model, one of the attack's :attr:`norms` (names of :data:`advkit.core.NORMS`).
            loss: the objective the search climbs, one of the attack's :attr:`losses`.
            targeted: False (untargeted), ``"random"`` (a random wrong class per sample) or
                ``"least-likely"`` (the class the model ranks lowest); see :attr:`targets`.
            early_stop: a sample that succeeds keeps that iterate and stops moving.
            seed: seeds the attack's draws (random starts, random targets); same seed, same result on the CPU.
            amp: run the model's forwards under bf16 autocast on CUDA (gradients, steps and projections
                stay float32).
            eot: forwards each gradient is averaged over (expectation over transformation), for a model
                whose forward is random; 1 (the default) for a deterministic model. With ``eot`` > 1 an
                iterate counts as fooling only where every draw is fooled, and the returned batch is
                judged on one fresh forward, as the official AutoAttack judges its ``rand`` version.
                Only attacks with :attr:`supports_eot` take ``eot`` > 1.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.norm = norm
        if eps is None and not self.minimum_norm:
            raise TypeError(f"eps must be a number: {type(self).__name__} is not a minimum-norm attack")
        self.eps = math.inf if eps is None else check_eps(eps, norm=self.geometry)
        self.loss = check_choice(loss, self.losses, "loss")
        self.targeted = check_target_mode(targeted)
        if self.targeted and self.targeted not in self.targets:
            raise ValueError(self._unsupported_target(f"targeted={self.targeted!r}"))
        self.early_stop, self.seed, self.amp = bool(early_stop), int(seed), bool(amp)
        self.eot = check_number(eot, "eot", low=1, low_open=False, integer=True)
        if self.eot > 1 and not self.supports_eot:
            raise ValueError(f"eot={self.eot}: {type(self).__name__} does not average its gradients over draws "
                             f"(supports_eot is False); use one that does ({', '.join(eot_attacks())}) with eot, or "
                             "AutoAttack(version='rand')")

    @property
    def norm(self) -> str:
        """The threat model's norm by name ("linf", "l2"); :attr:`geometry` is its :class:`~advkit.core.Norm`."""
        return self.geometry.name

    @norm.setter
    def norm(self, name: str) -> None:
        """Choose the norm by name: an unknown name or one outside :attr:`norms` is a ValueError."""
        geometry = get_norm(name)
        check_choice(name, self.norms, "norm")
        self.geometry: Norm = geometry

    def _unsupported_target(self, what: str) -> str:
        supported = ", ".join(self.targets) if self.targets else "none"
        return f"{what}: {type(self).__name__} does not support this target choice (supported: {supported})"

    def setting(self, name: str, eps: float | None = None):
        """Setting ``name`` as it runs at ``eps`` (default: the attack's): the attribute, or, where it
        is None, its rule from :attr:`derived` applied to eps."""
        value = getattr(self, name, None)
        if value is None and name in self.derived:
            return self.derived[name][1](self, self.eps if eps is None else eps)
        return value

    @final
    def __call__(self, x: Tensor, y: Tensor | None = None, target: Tensor | None = None) -> Tensor:
        """The adversarial batch alone: ``run(x, y, target, check_success=False).x_adv``."""
        return self.run(x, y, target, check_success=False).x_adv

    @final
    def run(self, x: Tensor, y: Tensor | None = None, target: Tensor | None = None, *, eps: float | None = None,
            seed: int | Tensor | None = None, check_success: bool = True, x_init: Tensor | None = None) -> AttackResult:
        """Attack ``x`` (labels ``y``) at ``eps`` (default: the attack's). The result lies in the
        eps-ball around ``x`` and in [0, 1], with x's shape, dtype and device. An input of another
        floating dtype than the model's (float64 or float16 for a float32 model) is attacked in the
        model's dtype and returned in its own, projected there (up to that dtype's rounding).

        ``seed``: an int (default: the attack's), or one seed per sample, shape (N,), so that each
        sample's random start is the same whichever batch it is attacked in (``evaluate`` relies
        on this to attack survivors exactly as it would attack everyone).

        ``x_init``: where to start instead of a random point (a warm start, e.g. the result at a
        smaller eps), for attacks with ``warm_starts``; it is projected onto the ball first.

        Final: subclasses implement :meth:`perturb` (and refuse target choices through :attr:`targets`)."""
        x = check_images(x)
        if eps is None:
            eps = self.eps
        elif not (self.minimum_norm and eps == math.inf):  # unbounded: a minimum-norm attack's smallest found
            eps = check_eps(eps, norm=self.geometry)
        y = None if y is None else check_labels(y, len(x), x.device)
        if target is not None and "given" not in self.targets:
            raise ValueError(self._unsupported_target("target"))
        target = None if target is None else check_labels(target, len(x), x.device, "target")
        work = model_dtype(self.model, x.dtype)  # the model's dtype: float64/float16 inputs are converted
        sample_seeds = seed if isinstance(seed, Tensor) and seed.ndim == 1 else None
        if sample_seeds is not None and len(sample_seeds) != len(x):
            raise ValueError(f"seed must be an int or one seed per sample ({len(x)}); got shape {tuple(seed.shape)}")
        if x_init is not None:
            if not self.warm_starts:
                raise ValueError(f"x_init: {type(self).__name__} does not start from a point; warm starts are for "
                                 "attacks with warm_starts=True (PGD, APGD)")
            x_init = check_images(x_init, "x_init").to(x.device, work)
            if x_init.shape != x.shape:
                raise ValueError(f"x_init must have x's shape {tuple(x.shape)}, got {tuple(x_init.shape)}")
        base_seed = self.seed if seed is None else int(seed[0] if sample_seeds is not None else seed)
        gen = torch.Generator(device=x.device).manual_seed(base_seed)
        with frozen(self.model), torch.enable_grad():
            run = AttackRun(self, x.detach().to(work), eps, y, target, gen, sample_seeds, x_init)
            if eps > 0:
                self.perturb(run)
            run.forward_clean()
            x_adv = run.best.clone()
            run.feasible(x_adv)
            out = x_adv if work == x.dtype else self._in_dtype_of(x, x_adv - run.x, eps)
            x_adv = out.to(work)  # what the model sees of the returned tensor
            moved = (x_adv != run.best).flatten(1).any(1)
            success = run.success & ~moved
            if check_success:
                unsettled = moved | (run.unjudged & ~run.success)
                if self.eot > 1:  # a random model: every row on one fresh forward, as the official code judges
                    unsettled = torch.ones_like(unsettled)
                success = self._recheck(run, x_adv, success, unsettled)
        return AttackResult(out.detach(), success, run.forwards, run.backwards)

    def _in_dtype_of(self, x: Tensor, delta: Tensor, eps: float) -> Tensor:
        """``x + delta`` in x's dtype, projected there onto the eps-ball and [0, 1] (an untouched row is x exactly)."""
        out = x.detach() + delta.to(x.dtype)
        (self.geometry.ball(x.detach(), eps) & Box(0.0, 1.0))(out)
        return out

    @torch.no_grad()
    def _recheck(self, run: AttackRun, x_adv: Tensor, success: Tensor, unsettled: Tensor) -> Tensor:
        """Success of the returned tensor itself, forwarding only the rows tracking has not judged
        on exactly that tensor (moved by the final projection, or kept unjudged by ``finish``)."""
        success = success.clone()
        idx = unsettled.nonzero().squeeze(1)
        if len(idx):
            success[idx] = succeeded(run.logits(x_adv[idx]), run.labels[idx], run.targeted)
        return success

    def perturb(self, run: AttackRun) -> None:
        """Search for adversarial examples, reporting iterates through ``run`` (its objective and
        ``finish``); the base class picks each sample's best."""
        raise NotImplementedError

    def rule(self, name: str) -> str:
        """The rule of the derived setting ``name`` as text: its :attr:`derived` description, given as a
        string or as a function of the attack (a rule that depends on the norm)."""
        text = self.derived[name][0]
        return text(self) if callable(text) else text

    def settings_text(self, eps: float | None = None) -> str:
        """The settings that run, after eps: norm, the class's :attr:`settings`, the loss, and whichever
        of targeted, early_stop, seed, amp and eot differ from their defaults. A setting derived from eps
        shows its value at ``eps`` with its rule, or (``eps=None``, for a whole eps grid) its rule alone."""
        parts = [f"norm={self.norm!r}"]
        for name in self.settings:
            if getattr(self, name, None) is None and name in self.derived:
                rule = self.rule(name)
                parts.append(f"{name}={rule}" if eps is None else f"{name}={_show(self.setting(name, eps))} ({rule})")
            else:
                parts.append(f"{name}={_show(getattr(self, name, None))}")
        parts.append(f"loss={self.loss!r}")
        defaults = {"targeted": False, "early_stop": True, "seed": 0, "amp": False, "eot": 1}
        parts += [f"{k}={getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v]
        return ", ".join(parts)

    def __repr__(self) -> str:
        """What runs: eps, then :meth:`settings_text` at that eps."""
        return f"{type(self).__name__}(eps={_show(self.eps)}, {self.settings_text(self.eps)})"


def eot_attacks() -> list[str]:
    """The names of advkit's attack classes that take ``eot`` > 1 (:attr:`Attack.supports_eot`), sorted."""
    found, todo = set(), [Attack]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.supports_eot and cls.__module__.startswith("advkit."):
            found.add(cls.__name__)
    return sorted(found)


def _show(value) -> str:
    """Floats to 4 significant digits (0.03137 for 8/255); everything else as its repr."""
    return f"{value:.4g}" if isinstance(value, float) else repr(value)

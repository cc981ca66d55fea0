"""Norm geometries: what the norm of a threat model means to an attack, chosen once by name.

A :class:`Norm` carries the steepest-ascent step rule, the projection onto the eps-ball, a
random start inside the ball, the per-sample distance, the radius at which a ball covers the
whole [0, 1] box, the shape of the least-norm move onto a hyperplane, a smooth squashing into the
unit ball (a generator's output layer) and the unit ball's largest L2 norm. :func:`get_norm` is
the one place a norm name is checked. A new norm is one subclass here (every abstract method) and
its entry in :data:`NORMS`; the attacks that work in it say so in their ``norms``.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from .constraints import Bound, Box, L1Ball, L2Ball, LinfBall, Projection, flat_norm, per_sample
from .steps import L1Step, L2Step, SignStep, StepRule

#: ``draw(row_shape, fill)``: a tensor with one row of ``row_shape`` per sample, each filled in
#: place by ``fill(tensor, generator)`` (an attack call's seeded draws: ``advkit.attacks.AttackRun.draw``).
Draw = Callable[[tuple[int, ...], Callable[[Tensor, torch.Generator], Tensor]], Tensor]


class Norm(ABC):
    """The geometry of one norm. Stateless: :data:`NORMS` holds the one instance of each."""

    #: The norm's name in the API ("linf", "l2", "l1").
    name: ClassVar[str]
    #: The norm as messages write it ("L-inf", "L2", "L1").
    label: ClassVar[str]
    #: The eps at which the ball around any point covers the whole [0, 1] box whatever the input
    #: size, or None where that radius grows with the size (see :meth:`covering_radius`).
    whole_range_eps: ClassVar[float | None] = None
    #: A plain PGD step's size in units of eps/steps (Madry et al.'s 2.5: a walk can cross the ball
    #: and back).
    pgd_step_scale: ClassVar[float] = 2.5

    @abstractmethod
    def step(self, alpha: Bound) -> StepRule:
        """The steepest-ascent step rule of size ``alpha`` (a float or a per-sample (N,) tensor)."""

    @abstractmethod
    def ball(self, center: Tensor, eps: Bound) -> Projection:
        """The projection onto the eps-ball around ``center`` (eps a float or a per-sample tensor)."""

    @abstractmethod
    def random_delta(self, x: Tensor, eps: float, draw: Draw) -> Tensor:
        """A random perturbation in the eps-ball, one per row of ``x``, from ``draw``."""

    def random_start(self, x: Tensor, eps: float, draw: Draw) -> Tensor:
        """A random point of the eps-ball around ``x`` clipped to [0, 1]: clipping moves each
        coordinate towards ``x`` (which lies in the box), so the point stays in the ball."""
        return (x + self.random_delta(x, eps, draw)).clamp_(0, 1)

    @abstractmethod
    def distance(self, delta: Tensor) -> Tensor:
        """Per-sample norm of ``delta`` over all but the first dimension, shape (N,)."""

    @abstractmethod
    def covering_radius(self, dim: int) -> float:
        """The smallest eps whose ball around any point of ``[0, 1]^dim`` holds the whole box."""

    @abstractmethod
    def least_norm_direction(self, magnitude: Tensor) -> Tensor:
        """Per coordinate, how far the least-norm move onto a hyperplane goes relative to the
        others, given the magnitudes of the plane's weights: ``magnitude^(q-1)`` for the dual
        exponent q (before the box's bounds cut coordinates short)."""

    @abstractmethod
    def squash(self, h: Tensor) -> Tensor:
        """``h`` mapped smoothly onto the open unit ball, one sample per row (what a generator's
        unbounded output becomes before it is scaled by eps: AdvGAN)."""

    @abstractmethod
    def l2_radius(self, dim: int) -> float:
        """The largest L2 norm of a point of the unit ball in ``dim`` dimensions."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linf(Norm):
    """The L-inf norm: sign steps, a box around the center, the largest coordinate as distance."""

    name, label, whole_range_eps = "linf", "L-inf", 1.0

    def step(self, alpha: Bound) -> StepRule:
        return SignStep(alpha)

    def ball(self, center: Tensor, eps: Bound) -> Projection:
        return LinfBall(center, eps)

    def random_delta(self, x: Tensor, eps: float, draw: Draw) -> Tensor:
        """Uniform in the box ``[-eps, eps]^D``."""
        return draw(x.shape[1:], lambda t, g: t.uniform_(-eps, eps, generator=g))

    def distance(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).abs().amax(1)

    def covering_radius(self, dim: int) -> float:
        return 1.0

    def least_norm_direction(self, magnitude: Tensor) -> Tensor:
        return torch.ones_like(magnitude)

    def squash(self, h: Tensor) -> Tensor:
        """``tanh`` per entry."""
        return torch.tanh(h)

    def l2_radius(self, dim: int) -> float:
        """The corner of the cube: ``sqrt(dim)``."""
        return math.sqrt(dim)


class L2(Norm):
    """The L2 norm: normalised-gradient steps, a Euclidean ball, the Euclidean length as distance."""

    name, label = "l2", "L2"

    def step(self, alpha: Bound) -> StepRule:
        return L2Step(alpha)

    def ball(self, center: Tensor, eps: Bound) -> Projection:
        return L2Ball(center, eps)

    def random_delta(self, x: Tensor, eps: float, draw: Draw) -> Tensor:
        """A uniform direction (a normalised Gaussian) times a radius uniform in [0, eps]."""
        direction = draw(x.shape[1:], lambda t, g: t.normal_(generator=g))
        direction /= flat_norm(direction).clamp_min(1e-12)
        return direction * per_sample(draw((), lambda t, g: t.uniform_(0, eps, generator=g)), x)

    def distance(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).norm(dim=1)

    def covering_radius(self, dim: int) -> float:
        return math.sqrt(dim)

    def least_norm_direction(self, magnitude: Tensor) -> Tensor:
        return magnitude

    def squash(self, h: Tensor) -> Tensor:
        """``h·tanh(||h||)/||h||`` per sample: the direction kept, the length squashed below 1."""
        size = h.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (h.ndim - 1)))
        return h * torch.tanh(size) / size

    def l2_radius(self, dim: int) -> float:
        return 1.0


class L1(Norm):
    """The L1 norm: sparse sign steps on the largest gradient coordinates, the L1 ball projected
    exactly together with the [0, 1] box ("Mind the box", Croce & Hein 2021), the sum of absolute
    values as distance."""

    name, label = "l1", "L1"
    #: The share of coordinates a plain step moves (PGD, FGSM, MI-FGSM); APGD adapts its own. With
    #: :attr:`pgd_step_scale` chosen on two models (benchmarks/README.md, "PGD at L1").
    sparsity = 0.02
    #: A sparse step moves a few coordinates: four times Madry's rule (10 eps/steps).
    pgd_step_scale = 10.0

    def step(self, alpha: Bound, sparsity: Bound | None = None) -> StepRule:
        """The sparse step of size ``alpha`` on a ``sparsity`` share of coordinates (default
        :attr:`sparsity`; one coordinate is the exact steepest ascent), chosen among the coordinates
        the [0, 1] box lets move."""
        return L1Step(alpha, self.sparsity if sparsity is None else sparsity, box=(0.0, 1.0))

    def ball(self, center: Tensor, eps: Bound) -> Projection:
        """The L1 ball; ``ball & Box(0, 1)`` is the exact projection onto both at once."""
        return L1Ball(center, eps)

    def random_delta(self, x: Tensor, eps: float, draw: Draw) -> Tensor:
        """A uniform direction on the L1 sphere (normalised Laplace draws) times a radius uniform in [0, eps]."""
        u = draw(x.shape[1:], lambda t, g: t.uniform_(-1, 1, generator=g))
        direction = u.sign() * -torch.log1p(-u.abs().clamp_max(1 - 1e-7))  # Laplace(0, 1)
        direction /= flat_norm(direction, p=1).clamp_min(1e-12)
        return direction * per_sample(draw((), lambda t, g: t.uniform_(0, eps, generator=g)), x)

    def random_start(self, x: Tensor, eps: float, draw: Draw) -> Tensor:
        """A Gaussian draw around ``x`` (unit variance per coordinate) projected onto the eps-ball
        and [0, 1] together: a random point of the ball's surface where the box allows, with no mass
        lost to the box (APGD-L1's start)."""
        start = x + draw(x.shape[1:], lambda t, g: t.normal_(generator=g))
        (self.ball(x, eps) & Box(0.0, 1.0))(start)
        return start

    def distance(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).abs().sum(1)

    def covering_radius(self, dim: int) -> float:
        return float(dim)

    def least_norm_direction(self, magnitude: Tensor) -> Tensor:
        """All of the move on the largest weights (the dual exponent is infinite), shared among ties."""
        return (magnitude == magnitude.amax(-1, keepdim=True)).to(magnitude.dtype)

    def squash(self, h: Tensor) -> Tensor:
        """``h·tanh(||h||_1)/||h||_1`` per sample: the direction kept, the L1 length squashed below 1."""
        size = h.flatten(1).abs().sum(1).clamp_min(1e-12).view(-1, *([1] * (h.ndim - 1)))
        return h * torch.tanh(size) / size

    def l2_radius(self, dim: int) -> float:
        """A vertex of the L1 ball: 1."""
        return 1.0


#: Every norm advkit knows, by name.
NORMS: dict[str, Norm] = {norm.name: norm for norm in (Linf(), L2(), L1())}


def get_norm(norm: str | Norm) -> Norm:
    """The geometry of ``norm`` (a name in :data:`NORMS`, or a geometry, returned as is); any other
    name is a ValueError listing the known ones."""
    if isinstance(norm, Norm):
        return norm
    if not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}; got {norm!r}")
    return NORMS[norm]


def ball(norm: str | Norm, center: Tensor, eps: Bound) -> Projection:
    """The eps-ball of ``norm`` around ``center``: ``get_norm(norm).ball(center, eps)``."""
    return get_norm(norm).ball(center, eps)

"""GAN losses as plain functions of discriminator logits, picked by name from ``GAN_LOSSES``.

Each discriminator loss ``d_*(real, fake)`` and generator loss ``g_*(fake)`` takes logits of shape
(N,) (``real``: D's logits on real samples, ``fake``: on generated ones) and returns the scalar that
player *minimises*. The log-sigmoid terms are written with
``softplus`` (``-log sigmoid(t) = softplus(-t)``, ``-log(1 - sigmoid(t)) = softplus(t)``), which is
exact and never takes the log of 0.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import per_sample


def d_minimax(real: Tensor, fake: Tensor) -> Tensor:
    """``-E log D(x) - E log(1 - D(G(z)))``: the original GAN discriminator (binary cross-entropy)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_minimax(fake: Tensor) -> Tensor:
    """``E log(1 - D(G(z)))``: the original, saturating generator loss (flat where D is confident)."""
    return -F.softplus(fake).mean()


def g_non_saturating(fake: Tensor) -> Tensor:
    """``-E log D(G(z))``: Goodfellow's non-saturating heuristic, strong gradients early on."""
    return F.softplus(-fake).mean()


def d_wasserstein(real: Tensor, fake: Tensor) -> Tensor:
    """``E f(G(z)) - E f(x)``: the critic's side of the Wasserstein-1 dual (needs a Lipschitz f)."""
    return fake.mean() - real.mean()


def g_wasserstein(fake: Tensor) -> Tensor:
    """``-E f(G(z))``: the generator's side of WGAN; also the generator loss of the hinge GAN."""
    return -fake.mean()


def d_hinge(real: Tensor, fake: Tensor) -> Tensor:
    """``E relu(1 - D(x)) + E relu(1 + D(G(z)))`` (Lim & Ye 2017; SN-GAN, BigGAN)."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def d_least_squares(real: Tensor, fake: Tensor) -> Tensor:
    """``1/2 E (D(x) - 1)^2 + 1/2 E D(G(z))^2`` (LSGAN, Mao et al. 2017, a=0, b=c=1)."""
    return 0.5 * ((real - 1.0).pow(2).mean() + fake.pow(2).mean())


def g_least_squares(fake: Tensor) -> Tensor:
    """``1/2 E (D(G(z)) - 1)^2``."""
    return 0.5 * (fake - 1.0).pow(2).mean()


@dataclass(frozen=True)
class GANLoss:
    """A named pair of losses plus the constraint the critic needs: weight clipping or a gradient penalty.

    Args:
        d: the discriminator's loss of (real logits, fake logits), minimised.
        g: the generator's loss of the fake logits, minimised.
        clip: the critic's weights are clipped (WGAN).
        penalty: the critic's loss adds a gradient penalty (WGAN-GP).
    """

    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor], Tensor]
    clip: bool = False
    penalty: bool = False


#: The GAN losses by name: what ``GANTrainer(loss=...)``, ``AdvGAN(gan_loss=...)`` and ``advkit gan --loss`` accept.
GAN_LOSSES: dict[str, GANLoss] = {
    "minimax": GANLoss(d_minimax, g_minimax),
    "non-saturating": GANLoss(d_minimax, g_non_saturating),
    "wgan": GANLoss(d_wasserstein, g_wasserstein, clip=True),
    "wgan-gp": GANLoss(d_wasserstein, g_wasserstein, penalty=True),
    "hinge": GANLoss(d_hinge, g_wasserstein),
    "lsgan": GANLoss(d_least_squares, g_least_squares),
}


def gan_loss(name: str) -> GANLoss:
    """The GAN loss pair (the discriminator's and the generator's loss) called ``name``; a ValueError lists the
    known names."""
    if name not in GAN_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(GAN_LOSSES)}; got {name!r}")
    return GAN_LOSSES[name]


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None, alpha: Tensor | None = None) -> Tensor:
    """WGAN-GP's ``E (||grad_x f(x_hat)||_2 - 1)^2`` (Gulrajani et al. 2017).

    Each sample gets its own interpolation weight and its own gradient norm; ``create_graph`` keeps
    the penalty differentiable for the critic's update. The input gradient has the input's dtype
    (float32 for float32 samples, also when the critic runs under autocast).

    Args:
        critic: maps a batch to logits, shape (N,).
        real: the real batch.
        fake: the generated batch, as many samples.
        generator: draws the interpolation weights uniform when ``alpha`` is None.
        alpha: the interpolation weights, shape (N,).
    """
    if alpha is None:
        alpha = torch.rand(real.shape[0], generator=generator)
    elif alpha.shape != real.shape[:1]:
        raise ValueError(f"alpha must hold one weight per sample, shape ({real.shape[0]},); got {tuple(alpha.shape)}")
    alpha = per_sample(alpha, real)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


def flat_logits(logits: Tensor) -> Tensor:
    """A discriminator's output as shape (N,): accepts (N,) or (N, 1), rejects anything else.

    Args:
        logits: the discriminator's output.
    """
    if logits.ndim == 2 and logits.shape[1] == 1:
        return logits[:, 0]
    if logits.ndim != 1:
        raise ValueError("a discriminator must return one logit per sample, shape (N,) or (N, 1); "
                         f"got {tuple(logits.shape)}")
    return logits


__all__ = [
    "GAN_LOSSES",
    "GANLoss",
    "d_hinge",
    "d_least_squares",
    "d_minimax",
    "d_wasserstein",
    "flat_logits",
    "g_least_squares",
    "g_minimax",
    "g_non_saturating",
    "g_wasserstein",
    "gan_loss",
    "gradient_penalty",
]

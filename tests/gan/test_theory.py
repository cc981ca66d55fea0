"""Theory checks: the optimal discriminator for a fixed G, and mode coverage on the ring of 8 Gaussians."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from advkit.gan import GANTrainer, MLPDiscriminator, MLPGenerator
from advkit.gan.tasks import RING_RECIPE, mode_statistics, ring_of_gaussians

log = logging.getLogger(__name__)

D_STAR_TOLERANCE = 0.04  # mean absolute error of sigmoid(D(x)) against D*(x) on the grid


class FixedGaussian(nn.Module):
    """A generator with no trainable parameters: noise z ~ N(0, 1) to N(mean, std^2)."""

    latent_dim = 1

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * z


def normal_pdf(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * (2 * torch.pi) ** 0.5)


def test_discriminator_approaches_optimum_for_fixed_generator():
    """p_data = N(0, 1), p_g = N(1, 0.5^2): D*(x) = p_data / (p_data + p_g), learned with the minimax loss.
    Measured over seeds 0-5 (the networks', the trainer's and the data's): a mean absolute error of
    0.006-0.017, so the tolerance holds for any of them, not for seed 0 alone."""
    torch.manual_seed(0)
    real = torch.randn(8192, 1, generator=torch.Generator().manual_seed(1))
    trainer = GANTrainer(FixedGaussian(1.0, 0.5), MLPDiscriminator(dim=1, hidden=64, depth=2), loss="minimax",
                         lr_d=2e-3, betas=(0.9, 0.999), ema_decay=None, device="cpu", seed=0)
    assert trainer.opt_g is None  # a generator without trainable parameters stays fixed: only D plays
    trainer.fit(TensorDataset(real, torch.zeros(len(real))), steps=800, batch_size=512, progress=False)
    grid = torch.linspace(-2.0, 2.5, 91).view(-1, 1)
    p_data, p_g = normal_pdf(grid, 0.0, 1.0), normal_pdf(grid, 1.0, 0.5)
    optimum = p_data / (p_data + p_g)
    with torch.no_grad():
        learned = torch.sigmoid(trainer.D(grid)).view(-1, 1)
    mae = float((learned - optimum).abs().mean())
    log.warning("D* check: mean absolute error %.4f on [-2, 2.5] (tolerance %.2f)", mae, D_STAR_TOLERANCE)
    assert mae < D_STAR_TOLERANCE


def train_ring(loss: str, seed: int, steps: int = 2000) -> dict[str, float]:
    torch.manual_seed(seed)
    trainer = GANTrainer(MLPGenerator(latent_dim=2), MLPDiscriminator(), **{**RING_RECIPE, "loss": loss}, device="cpu",
                         seed=seed)
    trainer.fit(ring_of_gaussians(20000), steps=steps, batch_size=256, progress=False)
    stats = mode_statistics(trainer.sample(2000))
    log.warning("ring of 8 Gaussians, %s, seed %d, %d steps: %s", loss, seed, steps, stats)
    return stats


#: Per loss, measured over seeds 0-9 (2,000 steps): the mean and standard deviation of the modes covered
#: (of 8) and of the share of samples on a mode. Non-saturating (the recipe's loss): 6-8 modes, 0.73-0.93
#: on a mode. Hinge, with the same learning rates, collapses on some seeds: 8 modes on 8 seeds but 3
#: (seed 2) and 7, and under 70% on a mode on 3 seeds (0.10, 0.36 and 0.54), 0.86-0.93 on the others.
RING_MEASURED = {"non-saturating": {"modes": (7.6, 0.70), "on_mode": (0.869, 0.066)},
                 "hinge": {"modes": (7.4, 1.58), "on_mode": (0.736, 0.27)}}
RING_SEEDS = (0, 1, 2)


@pytest.mark.slow  # three GANs of 2,000 steps
@pytest.mark.parametrize("loss", ["non-saturating", "hinge"])
def test_ring_of_gaussians_modes_covered(loss):
    """Averaged over seeds 0-2, the modes covered and the share of samples on a mode reach the measured
    means less three standard errors of a 3-seed mean (:data:`RING_MEASURED`): a seed that collapses
    counts, rather than one lucky seed standing for the loss."""
    runs = [train_ring(loss, seed) for seed in RING_SEEDS]
    for stat, key in (("modes", "modes_covered"), ("on_mode", "high_quality")):
        mean, sd = RING_MEASURED[loss][stat]
        got = sum(run[key] for run in runs) / len(runs)
        assert got >= mean - 3 * sd / len(runs) ** 0.5, (stat, runs)

"""The GAN part of ``advkit demo``: a short class-conditional hinge GAN on mnist5k, its sample grid
and loss curve, and a few sentences of markdown."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import data as datasets
from .models import dcgan
from .report import plot_losses, save_grid
from .trainer import GANTrainer

QUICK_STEPS, FULL_STEPS = 60, 400


def demo_section(out_dir: Path, quick: bool, seed: int) -> dict:
    """Train a small conditional GAN through the core with GANTrainer's default recipe and describe
    it. Quick: 60 steps of a width-16 DCGAN, about 9 CPU seconds; full: 400 steps of width 32, about
    85 CPU seconds (both on one thread; the budgets are 20 s and 90 s on 2 cores). The full run is a
    preview, not the benchmark: this early its samples vary little within a class.

    Returns ``{"title", "markdown", "images"}``; the images (sample grid: row i asks for digit i,
    loss curve) are written into ``out_dir``.
    """
    out_dir = Path(out_dir)
    steps, width = (QUICK_STEPS, 16) if quick else (FULL_STEPS, 32)
    train, _ = datasets.load("mnist5k", seed=seed)
    torch.manual_seed(seed)
    G, D = dcgan(num_classes=10, width=width)
    trainer = GANTrainer(G, D, conditional="class", seed=seed)  # the default recipe: hinge, SNGAN optimiser, EMA
    start = time.perf_counter()
    history = trainer.fit(train, steps=steps, batch_size=64, progress=False)
    seconds = time.perf_counter() - start
    labels = torch.arange(10).repeat_interleave(10)
    grid = save_grid(trainer.sample(labels=labels, seed=seed), out_dir / "gan_samples.png")
    curve = plot_losses(history, out_dir / "gan_losses.png")
    markdown = (
        f"A class-conditional DCGAN (hinge loss, projection discriminator) trained on mnist5k for {steps} "
        f"generator steps in {seconds:.0f} s, on the same min-max engine as the attacks: the discriminator "
        f"is the inner (max) player, the generator the outer (min) player. Row *i* of the grid asks for digit *i*. "
        f"Final losses: D {history['d_loss'][-1]:.3f}, G {history['g_loss'][-1]:.3f}"
        f"{'; divergence-guard rollbacks: ' + str(len(history['rollbacks'])) if history['rollbacks'] else ''}. "
        f"For quality numbers see `benchmarks/gan_mnist.py`.\n\n"
        f"![GAN samples]({grid.name})\n\n![GAN losses]({curve.name})\n"
    )
    return {"title": "GAN on the same engine", "markdown": markdown, "images": [str(grid), str(curve)]}

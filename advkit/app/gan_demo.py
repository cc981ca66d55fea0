"""The GAN part of ``advkit demo``, on the same min-max engine as the attacks.

Quick mode trains a small MLP GAN on the ring of 8 Gaussians (a reader counts the modes in the plot;
the section reports modes covered and the share of samples on a mode). The full mode trains the
class-conditional DCGAN on mnist5k with GANTrainer's default recipe and reports its quality as judged
by a classifier trained here: accuracy on the digit asked for, classes covered, within-class spread
relative to real digits and the classifier-FID ratio.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from .. import data as datasets
from ..gan.models import MLPDiscriminator, MLPGenerator, dcgan
from ..gan.report import plot_losses, plot_points, quality, reference_classifier, save_grid
from ..gan.tasks import RING_RECIPE, mode_statistics, ring_modes, ring_of_gaussians
from ..gan.trainer import GANTrainer
from ..train import accuracy

log = logging.getLogger(__name__)

RING_STEPS, DIGIT_STEPS, DIGIT_WIDTH, JUDGE_EPOCHS = 2000, 400, 32, 4
TITLE = "GAN on the same engine"
ENGINE = "the discriminator is the inner (max) player, the generator the outer (min) player"


def demo_section(out_dir: Path, quick: bool, seed: int, progress: bool = True) -> dict:
    """Train the demo GAN of the mode and describe it; returns ``{"title", "markdown", "images"}`` with
    the images written into ``out_dir``. Quick: the ring of 8 Gaussians, about 16 CPU seconds; full: 400
    steps of the width-32 class-conditional DCGAN plus a 4-epoch judge, about 1.5 CPU minutes."""
    out_dir = Path(out_dir)
    return _ring_section(out_dir, seed, progress) if quick else _digits_section(out_dir, seed, progress)


def _ring_section(out_dir: Path, seed: int, progress: bool) -> dict:
    log.info("demo GAN: the ring of 8 Gaussians, %d steps", RING_STEPS)
    torch.manual_seed(seed)
    trainer = GANTrainer(MLPGenerator(latent_dim=2), MLPDiscriminator(), **RING_RECIPE, device="cpu", seed=seed)
    start = time.perf_counter()
    history = trainer.fit(ring_of_gaussians(20000, seed=seed), steps=RING_STEPS, batch_size=256, progress=progress)
    seconds = time.perf_counter() - start
    samples = trainer.sample(2000, seed=seed + 1)
    stats = mode_statistics(samples)
    plot = plot_points(samples, ring_modes(), out_dir / "gan_ring.png",
                       title=f"{stats['modes_covered']} of {stats['modes']} modes after {RING_STEPS} steps")
    curve = plot_losses(history, out_dir / "gan_losses.png")
    markdown = (
        f"A small MLP GAN ({RING_RECIPE['loss']} loss) trained for {RING_STEPS} generator steps ({seconds:.0f} s) on "
        f"a ring of 8 Gaussians, on the same min-max engine as the attacks: {ENGINE}. The plot shows 2,000 "
        f"samples and the 8 true modes (red crosses).\n\n"
        f"- modes covered: {stats['modes_covered']} of {stats['modes']} (a mode counts with at least 1% of the "
        f"samples within 3 standard deviations of it)\n"
        f"- samples on a mode: {stats['high_quality']:.1%}\n"
        f"{_rollbacks(history)}\n"
        f"The full demo (without --quick) trains a class-conditional GAN on the MNIST digits instead.\n")
    return {"title": TITLE, "markdown": markdown, "images": [str(plot), str(curve)]}


def _digits_section(out_dir: Path, seed: int, progress: bool) -> dict:
    train, test = datasets.load("mnist5k", seed=seed)
    log.info("demo GAN: class-conditional DCGAN on mnist5k, %d steps", DIGIT_STEPS)
    torch.manual_seed(seed)
    G, D = dcgan(num_classes=train.num_classes, width=DIGIT_WIDTH)
    trainer = GANTrainer(G, D, conditional="class", device="cpu", seed=seed)  # the default recipe
    start = time.perf_counter()
    history = trainer.fit(train, steps=DIGIT_STEPS, batch_size=64, progress=progress)
    seconds = time.perf_counter() - start
    log.info("demo GAN: training the judge, a SmallCNN (%d epochs)", JUDGE_EPOCHS)
    judge = reference_classifier(train, epochs=JUDGE_EPOCHS, seed=seed, progress=progress)
    scores = quality(trainer, judge, train, test, n=1000)
    grid = save_grid(trainer.sample(labels=torch.arange(10).repeat_interleave(10), seed=seed),
                     out_dir / "gan_samples.png")
    curve = plot_losses(history, out_dir / "gan_losses.png")
    markdown = (
        f"A class-conditional DCGAN (hinge loss, projection discriminator, width {DIGIT_WIDTH}) trained on mnist5k for "
        f"{DIGIT_STEPS} generator steps ({seconds:.0f} s) with GANTrainer's default recipe (with a small "
        "mode-seeking term that keeps each digit varied), on the same min-max engine "
        f"as the attacks: {ENGINE}. Row i of the grid asks for digit i; the samples come from the generator's EMA.\n\n"
        f"Judged on 1,000 samples (100 per digit) by a separately trained SmallCNN (test accuracy "
        f"{accuracy(judge, test):.1%}):\n\n"
        f"- the judge reads the digit asked for in {scores['conditional_accuracy']:.1%} of the samples\n"
        f"- classes covered: {scores['classes_covered']} of {scores['num_classes']}\n"
        f"- within-class spread (mean pairwise distance): {scores['spread_ratio']:.2f}x that of real test digits\n"
        f"- classifier-FID: {scores['fid_samples_vs_test']:.2f} against {scores['fid_train_vs_test']:.2f} for real "
        f"train vs test digits (ratio {scores['fid_ratio']:.1f}; 1 would be indistinguishable)\n"
        f"{_rollbacks(history)}")
    return {"title": TITLE, "markdown": markdown, "images": [str(grid), str(curve)]}


def _rollbacks(history: dict) -> str:
    n = len(history["rollbacks"])
    return f"- divergence-guard rollbacks: {n}\n" if n else ""

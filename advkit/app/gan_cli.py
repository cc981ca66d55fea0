"""``advkit gan``: train a GAN on a named data set and write sample grids per checkpoint, a loss
curve, metrics and checkpoints into one folder. A thin shell over :class:`GANTrainer`; the training
hyper-parameters default to :class:`~advkit.gan.options.GANOptions`' defaults (one place). User
mistakes (a zero width, ``--steps 0``, an ``--out`` that cannot be written, a folder holding another
run, nothing to resume, a resume with other settings, data or networks) raise ValueError or
FileNotFoundError before any training, which the ``advkit`` command prints as one line. ``--out .``
is allowed: the command writes its named files (samples, metrics, curve, ``checkpoints/``) into the
folder and replaces no folder. Under torchrun
(``torchrun --nproc_per_node N -m advkit -- gan ...``) the ranks share each batch and rank 0 alone
writes the folder and prints the metrics."""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from pathlib import Path

import torch

from .. import data as datasets
from ..acceleration import add_gpu_options, gpu_options
from ..core import Hook
from ..distributed import is_main
from ..files import write_text
from ..gan.losses import GAN_LOSSES
from ..gan.models import Discriminator, Translator, dcgan
from ..gan.options import DEFAULTS
from ..gan.report import plot_losses, quality, reference_classifier, run_summary, save_grid, translation_quality
from ..gan.tasks import TASKS, paired
from ..gan.trainer import GANTrainer
from ..outputs import OutputError, check_folder

log = logging.getLogger(__name__)
FIT_DEFAULTS = {k: p.default for k, p in inspect.signature(GANTrainer.fit).parameters.items()
                if p.default is not p.empty}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``gan`` subcommand."""
    p = sub.add_parser("gan",
                       help="train a GAN (unconditional, class-conditional or pix2pix) and write samples and metrics")
    p.add_argument("--data", default="mnist5k", choices=datasets.TRAINING_NAMES)
    p.add_argument("--root", default=None, help="folder of the torchvision data sets")
    p.add_argument("--loss", default=DEFAULTS["loss"], choices=tuple(GAN_LOSSES), help="one of advkit.gan.GAN_LOSSES")
    p.add_argument("--conditional", default=None, choices=["class", "image"])
    p.add_argument("--task", default="edges", choices=list(TASKS), help="paired task for --conditional image")
    p.add_argument("--steps", type=int, default=2000,
                   help="generator steps to train (with --resume: the total to reach); at least 1")
    p.add_argument("--batch-size", type=int, default=FIT_DEFAULTS["batch_size"])
    p.add_argument("--n-critic", type=int, default=DEFAULTS["n_critic"])
    p.add_argument("--lr-g", type=float, default=DEFAULTS["lr_g"])
    p.add_argument("--lr-d", type=float, default=DEFAULTS["lr_d"])
    p.add_argument("--l1-weight", type=float, default=100.0,
                   help="L1 weight for --conditional image (pix2pix uses 100)")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoints are in OUT/checkpoints (an error when none loads)")
    p.add_argument("--device", default=None)
    add_gpu_options(p, "G and D")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default="out/gan")
    p.set_defaults(func=run)


class GridPerCheckpoint(Hook):
    """Writes a sample grid every ``every`` steps (fixed noise, so grids compare across steps)."""

    def __init__(self, trainer: GANTrainer, every: int, out: Path, condition: torch.Tensor | None):
        self.trainer, self.every, self.out, self.condition = trainer, every, out, condition

    def round_end(self, r: int) -> None:
        if (r + 1) % self.every == 0:
            save_grid(grid_samples(self.trainer, self.condition), self.out / f"samples_{r + 1:07d}.png")


def grid_samples(trainer: GANTrainer, condition: torch.Tensor | None) -> torch.Tensor:
    """100 samples (10 per class when class-conditional), or condition/output pairs side by side."""
    if condition is None:
        return trainer.sample(100)
    fake = trainer.sample(condition=condition)
    cond = condition.expand(-1, fake.shape[1], -1, -1)
    return torch.stack([cond, fake], 1).flatten(0, 1)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.steps < 1:
        raise ValueError(f"--steps must be an integer >= 1, got {args.steps}: the metrics of an untrained generator "
                         "mean nothing (with --resume, --steps is the total to reach)")
    check_folder(out, "--out")
    check_folder(out / "checkpoints", "--out's checkpoints folder")
    train, test = datasets.load(args.data, root=args.root, seed=args.seed)
    x, _ = train.tensors
    torch.manual_seed(args.seed)
    if args.conditional == "image":
        train_data, test_pairs = paired(train, args.task), paired(test, args.task)
        cond_channels = train_data.tensors[0].shape[1]
        G = Translator(cond_channels, x.shape[1], latent_dim=8, width=args.width)
        D = Discriminator(x.shape[1], x.shape[-1], cond_channels=cond_channels, width=args.width)
        grid_condition = test_pairs.tensors[0][:50]
    else:
        train_data, test_pairs, grid_condition = train, None, None
        G, D = dcgan(x.shape[1], x.shape[-1], 10 if args.conditional == "class" else None, args.latent_dim, args.width)
    l1 = args.l1_weight if args.conditional == "image" else 0.0
    trainer = GANTrainer(G, D, loss=args.loss, n_critic=args.n_critic, lr_g=args.lr_g, lr_d=args.lr_d,
                         conditional=args.conditional, l1_weight=l1, device=args.device, seed=args.seed,
                         **gpu_options(args))
    every = args.checkpoint_every if args.checkpoint_every is not None else max(1, args.steps // 10)
    grids = [GridPerCheckpoint(trainer, every, out, grid_condition)] if is_main() else []
    history = trainer.fit(train_data, steps=args.steps, batch_size=args.batch_size, checkpoint_dir=out / "checkpoints",
                          checkpoint_every=every, resume=args.resume, progress=not args.no_progress, hooks=grids)
    if not is_main():  # rank 0 writes the samples, metrics and curve of the run every rank trained alike
        return 0
    try:
        return write_results(args, out, trainer, history, (train, test, test_pairs), grid_condition)
    except OSError as err:
        raise OutputError(f"cannot write the samples and metrics into {out} ({type(err).__name__}: {err}); the "
                          f"trained run is safe in {out / 'checkpoints'}: once {out} is writable, run the same "
                          "command with --resume to write them without training") from err


def write_results(args: argparse.Namespace, out: Path, trainer: GANTrainer, history: dict[str, list], data: tuple,
                  grid_condition: torch.Tensor | None) -> int:
    """The trained run's metrics (printed as JSON), sample grid, loss curve and metrics.json in ``out``;
    ``data``: the train and test sets and the test pairs (image-conditional) or None."""
    train, test, test_pairs = data
    cache = out / "classifier.pt"
    if not cache.exists() and not args.no_progress:  # stderr, beside the bars: stdout carries the metrics JSON
        print(f"advkit gan: training the reference classifier for the metrics (a SmallCNN on {args.data})",
              file=sys.stderr)
    classifier = reference_classifier(train, seed=args.seed, cache=cache, progress=not args.no_progress)
    if args.conditional == "image":
        cond, target = test_pairs.tensors
        scores = translation_quality(trainer, classifier, cond, target, test.tensors[1])
    else:
        scores = quality(trainer, classifier, train, test)
    report = {"args": {k: v for k, v in vars(args).items() if k != "func"}, **run_summary(trainer, scores),
              "loss_curve": str(plot_losses(history, out / "losses.png")),
              "samples": str(save_grid(grid_samples(trainer, grid_condition), out / "samples_final.png"))}
    write_text(out / "metrics.json", json.dumps(report, indent=2, default=str))
    log.info("wrote %s", out)
    print(json.dumps(report["metrics"], indent=2))
    return 0

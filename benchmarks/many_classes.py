"""advkit's AutoAttack against the official one (``pyautoattack``) with 100 and 1,000 classes: robust
accuracy and time of the standard version on the same model and images (issue 21 item 2).

    pip install 'advkit[autoattack]'
    python benchmarks/many_classes.py [--n 100] [--eps 1/255]

The models are SmallCNNs (width 16, 3x16x16 inputs) with random weights and 100 or 1,000 outputs;
the images are uniform noise labelled with the model's own predictions (clean accuracy 100%), so
only the attack decides the numbers. Both ensembles pick the targets of APGD-T and FAB-T among the
9 classes ranked 2nd to 10th. The official code's run and ours are
:func:`benchmarks.autoattack.official` and :func:`benchmarks.autoattack.ours`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from fractions import Fraction
from pathlib import Path

import torch

import advkit

sys.path.insert(0, str(Path(__file__).parent))
from autoattack import official, ours, timed  # noqa: E402  (benchmarks/autoattack.py)


def model_and_images(classes: int, n: int, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A random SmallCNN with ``classes`` outputs, ``n`` noise images and the model's predictions as labels."""
    torch.manual_seed(seed)
    model = advkit.models.SmallCNN(in_channels=3, num_classes=classes, input_size=16, width=16, hidden=64).eval()
    x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        return model, x, model(x).argmax(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="images per model")
    parser.add_argument("--eps", type=lambda s: float(Fraction(s)), default=1 / 255, help="L-inf budget")
    parser.add_argument("--classes", default="100,1000", help="comma-separated numbers of classes")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of both ensembles")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    print(f"AutoAttack standard, L-inf eps={args.eps:.5f}, {args.n} noise images per model, {args.threads} thread(s)")
    print(f"{'classes':>8s}{'seed':>5s}{'advkit robust':>15s}{'official robust':>17s}{'advkit cpu s':>14s}"
          f"{'official cpu s':>16s}")
    for classes in map(int, args.classes.split(",")):
        model, x, y = model_and_images(classes, args.n)
        for seed in map(int, args.seeds.split(",")):
            mine, _, mine_cpu = timed(ours, model, x, y, args.eps, seed)
            theirs, _, their_cpu = timed(official, model, x, y, args.eps, args.n, seed)
            print(f"{classes:8d}{seed:5d}{int(mine.sum()):15d}{int(theirs.sum()):17d}{mine_cpu:14.1f}{their_cpu:16.1f}",
                  flush=True)


if __name__ == "__main__":
    main()

"""Accuracy of a plainly trained SmallCNN on mnist5k under each corruption of advkit.defenses.

Run:

    python benchmarks/corruptions.py            # trains 3 epochs with seed 0, prints the table
    python benchmarks/corruptions.py --epochs 8 --severities 1 2 3 4 5

Trains ``advkit.models.SmallCNN`` with ``advkit.train.fit`` (its defaults, including random shifts
of up to 2 pixels), then prints the clean test accuracy and the accuracy on the whole test split
corrupted with ``advkit.defenses.corrupt(x, name, severity, seed=0)``, and the mean absolute pixel
change each corruption makes.
"""
from __future__ import annotations

import argparse
import time

import torch

import advkit
from advkit.defenses import CORRUPTIONS, corrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--severities", type=int, nargs="+", default=[1, 3, 5])
    args = parser.parse_args()

    train, test = advkit.data.load("mnist5k")
    torch.manual_seed(args.seed)
    model = advkit.models.SmallCNN()
    start = time.perf_counter()
    advkit.train.fit(model, train, epochs=args.epochs, seed=args.seed, device="cpu", progress=False)
    print(f"SmallCNN, {args.epochs} epochs on mnist5k train ({time.perf_counter() - start:.0f} s)")
    x, y = test.tensors
    print(f"clean test accuracy: {advkit.train.accuracy(model, test):.1%} on {len(x)} images\n")
    header = "".join(f"{f'sev {s}':>16}" for s in args.severities)
    print(f"{'corruption':<16}{header}   (accuracy, mean |change|)")
    for name in CORRUPTIONS:
        cells = []
        for severity in args.severities:
            corrupted = corrupt(x, name, severity, seed=args.seed)
            acc = advkit.train.accuracy(model, (corrupted, y))
            cells.append(f"{acc:>8.1%}, {float((corrupted - x).abs().mean()):.3f}")
        print(f"{name:<16}" + "".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()

"""FAB's minimum-norm mode: one unbounded run against fixed-eps FAB run once per eps.

Run:

    OMP_NUM_THREADS=1 python benchmarks/fab_curve.py --n 100 --steps 20 --targets 3

The standard SmallCNN of benchmarks/attacks.py (cached), the first ``n`` mnist5k test images. For each
norm, FAB with ``eps=None`` runs once and a sample counts as robust at eps when its smallest
perturbation found exceeds eps (what ``evaluate`` reads off a ``minimum_norm`` attack); fixed-eps FAB,
same settings, runs on every image at each eps. Printed per eps: the robust samples by each, how
many samples the two disagree on, and the seconds and forward passes each spent.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from attacks import load_model

import advkit
from advkit.attacks import FAB
from advkit.core import get_norm

GRIDS = {"linf": [0.05, 0.1, 0.15, 0.2, 0.3], "l2": [0.5, 1.0, 1.5, 2.0, 3.0], "l1": [2.5, 5.0, 10.0, 15.0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--norms", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--model", type=Path, default=Path(tempfile.gettempdir()) / "advkit_bench_smallcnn_mnist5k.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, torch.device("cpu"))
    x, y = advkit.data.load("mnist5k")[1].tensors
    x, y = x[:args.n], y[:args.n]
    settings = {"steps": args.steps, "n_target_classes": args.targets}
    print(f"{len(x)} mnist5k test images, FAB-T {settings}")
    for norm in args.norms:
        t0 = time.perf_counter()
        res = FAB(model, eps=None, norm=norm, **settings).run(x, y)
        seconds = time.perf_counter() - t0
        dist = torch.where(res.success, get_norm(norm).distance(res.x_adv - x), torch.tensor(math.inf))
        print(f"{norm}: one unbounded run {seconds:.1f} s, {res.forwards} forwards")
        walk_seconds, walk_forwards = 0.0, 0
        for eps in GRIDS[norm]:
            t0 = time.perf_counter()
            fixed = FAB(model, eps=eps, norm=norm, **settings).run(x, y)
            walk_seconds += time.perf_counter() - t0
            walk_forwards += fixed.forwards
            curve = dist > eps
            print(f"  eps {eps:g}: robust {int(curve.sum())} (curve) vs {int((~fixed.success).sum())} (fixed eps), "
                  f"{int((curve != ~fixed.success).sum())} samples differ", flush=True)
        print(f"  fixed eps at every eps: {walk_seconds:.1f} s, {walk_forwards} forwards")


if __name__ == "__main__":
    main()

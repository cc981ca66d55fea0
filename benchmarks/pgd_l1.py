"""PGD's L1 defaults (the share of coordinates a sparse step moves, the step size in eps/steps) on two
models: robust accuracy left by PGD-100 at L1 for each pair, beside APGD-L1 (100 steps), one seed.

    OMP_NUM_THREADS=1 python benchmarks/pgd_l1.py --n 200 --eps 10

The models are the tests' committed assets: the standard SmallCNN (tests/assets/smallcnn_mnist5k.pt)
and the PGD-trained one (robust_cnn_mnist5k.pt); the first ``--n`` mnist5k test images.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import advkit
from advkit.attacks import APGD, PGD
from advkit.core import L1

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shared_models import shared_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.05, 0.02, 0.01])
    parser.add_argument("--scale", type=float, nargs="+", default=[2.5, 5.0, 10.0], help="step sizes, in eps/steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = (t[:args.n] for t in advkit.data.load("mnist5k")[1].tensors)
    default = L1.sparsity
    print(f"robust accuracy at L1 eps {args.eps:g}, PGD-{args.steps}, {args.n} mnist5k test images, seed 0")
    print(f"{'model':>10s}{'sparsity':>10s}" + "".join(f"{f'{s:g} eps/steps':>16s}" for s in args.scale))
    for name in ("smallcnn_mnist5k", "robust_cnn_mnist5k"):
        model = shared_model(name)
        for sparsity in args.sparsity:
            L1.sparsity = sparsity
            row = [PGD(model, eps=args.eps, steps=args.steps, alpha=s * args.eps / args.steps, norm="l1",
                       seed=0).run(x, y).success for s in args.scale]
            print(f"{name[:10]:>10s}{sparsity:10g}" + "".join(f"{float((~r).float().mean()):16.1%}" for r in row),
                  flush=True)
        L1.sparsity = default
        apgd = APGD(model, eps=args.eps, steps=args.steps, norm="l1", seed=0).run(x, y).success
        print(f"{name[:10]:>10s}  APGD-L1: {float((~apgd).float().mean()):.1%}", flush=True)


if __name__ == "__main__":
    main()

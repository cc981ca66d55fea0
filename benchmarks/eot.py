"""APGD-T, FAB-T and CW with single-draw gradients against expectation over transformation (``eot``) on a
randomized model: robust accuracy, the passes spent and CPU time per seed.

    OMP_NUM_THREADS=1 python benchmarks/eot.py --n 100 --seeds 0 1 2

The model is benchmarks/autoattack.py's adversarially trained SmallCNN (cached in --model) behind Gaussian
noise of std ``--sigma`` on its input in every forward, eval mode included (as benchmarks/randomized.py).
Every returned batch is judged here alike, over 10 fresh forwards (not by the attack's own ``success``:
with eot 1, a sample fooled by one lucky draw during the search counts as fooled without a fresh forward).
APGD-T and FAB-T run at L-inf ``--eps``; CW (L2 only) runs unbounded and is read at L2 ``--eps-l2``.
Each attack runs at eot 1 and eot ``--eot`` with the same steps, and APGD-T also at eot 1 with ``--eot``
times the steps (the same passes as EOT). Each seed seeds the noise and the attacks.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

import advkit
from advkit.attacks import APGDT, CW, FAB

sys.path.insert(0, str(Path(__file__).parent))
from randomized import noisy_model_and_images, noisy_model_parser  # noqa: E402


def configurations(args: argparse.Namespace) -> list[tuple[str, object]]:
    """(label, attack) pairs: each attack at eot 1 and eot ``args.eot``, and APGD-T at eot 1 with as many passes."""
    k, targets = args.eot, args.targets

    def apgdt(model, seed, eot, steps):
        return APGDT(model, args.eps, steps=steps, n_target_classes=targets, eot=eot, seed=seed)

    def fab(model, seed, eot):
        return FAB(model, args.eps, steps=args.steps, n_target_classes=targets, eot=eot, seed=seed)

    def cw(model, seed, eot):
        return CW(model, None, steps=args.steps, binary_steps=5, eot=eot, seed=seed, progress=False)

    return [
        ("APGD-T eot 1", lambda m, s: apgdt(m, s, 1, args.steps)),
        (f"APGD-T eot 1, {k}x steps", lambda m, s: apgdt(m, s, 1, k * args.steps)),
        (f"APGD-T eot {k}", lambda m, s: apgdt(m, s, k, args.steps)),
        ("FAB-T eot 1", lambda m, s: fab(m, s, 1)),
        (f"FAB-T eot {k}", lambda m, s: fab(m, s, k)),
        ("CW eot 1", lambda m, s: cw(m, s, 1)),
        (f"CW eot {k}", lambda m, s: cw(m, s, k)),
    ]


@torch.no_grad()
def robust(model: nn.Module, res: advkit.attacks.AttackResult, x: torch.Tensor, y: torch.Tensor, label: str,
           eps_l2: float, draws: int = 10) -> float:
    """Robust accuracy of the returned batch, judged here for every attack alike: the share of samples the
    model still classifies right, averaged over ``draws`` fresh forwards (the official code judges one; this
    is its expectation). CW's results beyond L2 ``eps_l2`` count as robust."""
    right = torch.stack([model(res.x_adv).argmax(1) == y for _ in range(draws)]).float().mean(0)
    if label.startswith("CW"):
        right = torch.where((res.x_adv - x).flatten(1).norm(dim=1) > eps_l2, torch.ones_like(right), right)
    return float(right.mean())


def main() -> None:
    parser = noisy_model_parser(__doc__.splitlines()[0], n=100)
    parser.add_argument("--eps-l2", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--eot", type=int, default=10)
    args = parser.parse_args()
    model, x, y = noisy_model_and_images(args)
    print(f"L-inf eps={args.eps} (CW: L2 eps={args.eps_l2}), {args.n} mnist5k test images, noise sigma={args.sigma}, "
          f"{args.steps} steps, {args.targets} target classes")
    print("| attack | seed | robust | forwards per image | CPU s |")
    print("|---|---|---|---|---|")
    for label, make in configurations(args):
        for seed in args.seeds:
            torch.manual_seed(seed)
            cpu = time.process_time()
            res = make(model, seed).run(x, y)
            share = robust(model, res, x, y, label, args.eps_l2)
            print(f"| {label} | {seed} | {share:.1%} | {math.ceil(res.forwards / args.n)} | "
                  f"{time.process_time() - cpu:.0f} |", flush=True)


if __name__ == "__main__":
    main()

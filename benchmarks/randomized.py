"""advkit's "autoattack-rand" against the official AutoAttack ``version="rand"`` (``pyautoattack``) on a
randomized model, side by side in one process: robust accuracy and time per seed.

    pip install 'advkit[autoattack]'
    OMP_NUM_THREADS=1 python benchmarks/randomized.py --n 500 --seeds 0 1 2

The model is benchmarks/autoattack.py's adversarially trained SmallCNN (cached in --model) behind
Gaussian noise of std ``--sigma`` on its input in every forward, eval mode included. Both sides judge a
sample on one fresh forward of their returned point (the official ``robust_flags``; ours ``success``).
Each seed seeds the noise and the attacks; ours and theirs alternate per seed, so background load hits
both. CPU seconds are this process's (one thread: the work done).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import advkit
from advkit.attacks import AutoAttack
from advkit.defenses import GaussianNoise

sys.path.insert(0, str(Path(__file__).parent))
from autoattack import cached_robust_cnn  # noqa: E402


def official(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    """Per-sample robustness under the official rand version (L-inf)."""
    from pyautoattack import AutoAttack as OfficialAutoAttack

    atk = OfficialAutoAttack(model, norm="Linf", eps=eps, version="rand", seed=seed, device=x.device)
    x_adv, y_adv = atk.run_standard_evaluation(x, y, batch_size=len(x))
    assert float((x_adv - x).abs().amax()) <= eps + 1e-6
    return y_adv == y


def ours(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    """Per-sample robustness under advkit's AutoAttack rand version (L-inf)."""
    res = AutoAttack(model, eps=eps, norm="linf", version="rand", seed=seed, progress=False).run(x, y)
    return ~res.success


def noisy_model_parser(description: str, n: int) -> argparse.ArgumentParser:
    """The options of the benchmarks on the noise-injected model: images, eps, noise, seeds, the model's cache."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--sigma", type=float, default=0.2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", type=Path, default=Path(tempfile.gettempdir()) / "advkit_bench_robust_cnn.pt")
    return parser


def noisy_model_and_images(args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The PGD-trained SmallCNN behind Gaussian input noise of std ``args.sigma`` (one thread), and the
    first ``args.n`` mnist5k test images."""
    torch.set_num_threads(1)
    model = nn.Sequential(GaussianNoise(args.sigma), cached_robust_cnn(args.model)).eval()
    x, y = advkit.data.load("mnist5k")[1].tensors
    return model, x[:args.n], y[:args.n]


def main() -> None:
    parser = noisy_model_parser(__doc__.splitlines()[0], n=500)
    args = parser.parse_args()
    model, x, y = noisy_model_and_images(args)
    with torch.no_grad():
        torch.manual_seed(0)
        clean = int((model(x).argmax(1) == y).sum())
        plain = int((model[1](x).argmax(1) == y).sum())
    print(f"AutoAttack rand, L-inf eps={args.eps}, {args.n} mnist5k test images, noise sigma={args.sigma}: "
          f"clean {clean}/{args.n} (without the noise {plain}/{args.n})")
    print("| seed | ours robust | official robust | ours wall s | official wall s | ours CPU s | official CPU s |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        row = {}
        for name, fn in (("ours", ours), ("official", official)):
            torch.manual_seed(seed)
            wall, cpu = time.perf_counter(), time.process_time()
            robust = fn(model, x, y, args.eps, seed)
            row[name] = (float(robust.float().mean()), time.perf_counter() - wall, time.process_time() - cpu)
        (ra, wa, ca), (rb, wb, cb) = row["ours"], row["official"]
        print(f"| {seed} | {ra:.1%} | {rb:.1%} | {wa:.0f} | {wb:.0f} | {ca:.0f} | {cb:.0f} |", flush=True)


if __name__ == "__main__":
    main()

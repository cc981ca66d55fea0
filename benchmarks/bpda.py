"""BPDA against JPEG compression (issue 20 item 2): a standard mnist5k SmallCNN behind ``JPEG(quality)``.

1. ``evaluate`` with plain PGD on the defended model: its checks must flag gradient masking (JPEG's
   rounding makes the input gradient exactly zero).
2. Per seed and eps: the defended model's accuracy under PGD through BPDA (``nn.Sequential(BPDA(JPEG(q)),
   model)``, identity backward; its success re-judged on the defended model itself) and under Square
   with --queries queries on the defended model, on the first --n mnist5k test images.
3. ``evaluate`` on the BPDA model: the gradient checks pass there.

    OMP_NUM_THREADS=1 python benchmarks/bpda.py --n 200 --seeds 0 1 2

The model is plain training, 8 epochs, seed 0 (the recipe of tests/shared_models.py's committed
asset), cached in --cache.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

import advkit
from advkit.attacks import BPDA, PGD, Square
from advkit.defenses import JPEG
from advkit.models import SmallCNN
from advkit.train import fit


def standard_cnn(cache: Path) -> nn.Module:
    """The standard SmallCNN (8 epochs on mnist5k train, seed 0), loaded from ``cache`` or trained and saved there."""
    path = cache / "bpda_standard.pt"
    model = SmallCNN()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    fit(model, advkit.data.load("mnist5k")[0], epochs=8, seed=0, device="cpu", progress=False)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def show_checks(title: str, report) -> None:
    print(title)
    for check in report.checks:
        print(f"  {check.status:4} {check.name}: {check.message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.2, 0.3])
    parser.add_argument("--quality", type=int, default=50)
    parser.add_argument("--steps", type=int, default=100, help="PGD steps through BPDA")
    parser.add_argument("--restarts", type=int, default=10, help="PGD restarts through BPDA (only survivors restart)")
    parser.add_argument("--queries", type=int, default=5000, help="Square's query budget")
    parser.add_argument("--skip-evaluate", action="store_true", help="only the accuracy table")
    parser.add_argument("--skip-square", action="store_true", help="PGD through BPDA alone (Square's column blank)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/advkit-bench"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = standard_cnn(args.cache)
    defended = nn.Sequential(JPEG(args.quality), model).eval()
    through = nn.Sequential(BPDA(JPEG(args.quality)), model).eval()
    x, y = advkit.data.load("mnist5k")[1][: args.n]
    print(f"standard SmallCNN on the first {len(x)} mnist5k test images: clean {accuracy(model, x, y):.1%}, "
          f"behind JPEG({args.quality}) {accuracy(defended, x, y):.1%}", flush=True)

    if not args.skip_evaluate:
        grid = [0.0, 0.1, *args.eps]
        for title, net in ((f"evaluate(JPEG({args.quality}) + model, pgd-40)", defended),
                           (f"evaluate(BPDA(JPEG({args.quality})) + model, pgd-40)", through)):
            t0 = time.perf_counter()
            report = advkit.evaluate(net, (x, y), ["pgd-40"], eps=grid, progress=False)
            acc = report["model"].accuracy("pgd-40")
            print(f"{title}: accuracy {', '.join(f'{e:g}: {a:.1%}' for e, a in zip(grid, acc, strict=True))} "
                  f"({time.perf_counter() - t0:.0f} s)")
            show_checks("  checks:", report)

    print(f"\n| seed | eps | PGD-{args.steps} x {args.restarts} restarts through BPDA | Square ({args.queries} queries)"
          " | seconds BPDA / Square |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        for eps in args.eps:
            t0 = time.perf_counter()
            pgd = PGD(through, eps=eps, steps=args.steps, restarts=args.restarts, seed=seed)
            x_pgd = pgd(x, y)
            t1 = time.perf_counter()
            x_sq = x if args.skip_square else Square(defended, eps=eps, n_queries=args.queries, seed=seed,
                                                     progress=False)(x, y)
            t2 = time.perf_counter()
            assert (x_pgd - x).abs().max() <= eps + 1e-6 and (x_sq - x).abs().max() <= eps + 1e-6
            square = "-" if args.skip_square else f"{accuracy(defended, x_sq, y):.1%}"
            print(f"| {seed} | {eps:g} | {accuracy(defended, x_pgd, y):.1%} | {square} | "
                  f"{t1 - t0:.0f} / {t2 - t1:.0f} |", flush=True)


if __name__ == "__main__":
    main()

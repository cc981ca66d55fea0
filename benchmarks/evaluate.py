"""Robustness curve cost: advkit.evaluate (survivors only) versus the torchattacks way (the same
PGD-40 on every sample at every eps), side by side in one process.

Run (the allocator settings matter on small CPUs, see docs/ARCHITECTURE.md):

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python benchmarks/evaluate.py
    ... python benchmarks/evaluate.py --device cuda --n 1000

Both sides attack the same mnist5k test images with the same cached SmallCNN (see
benchmarks/attacks.py) on a 7-point L-inf grid, with the same PGD-40 (alpha = 2.5 eps / 40).
torchattacks starts each eps from a random point; advkit does at the first eps, then starts each
survivor where its search at the previous eps ended (evaluate's warm_start). Repetitions are
interleaved (ours, theirs, ours, ...) so background load hits both alike; times are medians, and
the verdict uses the median of the per-repetition ratios. The target (issue 3): ours <= 1/3 of the
time, with equal or lower robust accuracy at every eps. ``--full`` adds advkit with
survivors=False and ``--fresh`` advkit with warm_start=False, to show what each saving is worth.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import advkit
from advkit.attacks import PGD
from advkit.core import frozen

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import common_args, setup  # noqa: E402  (the benchmarks share one cached model)

#: The 7-point MNIST grid of the design notes; eps 0 (clean accuracy) costs each side one forward.
GRID = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
STEPS = 40


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[float], batch_size: int, device: str,
         survivors: bool = True, warm_start: bool = True) -> list[float]:
    """advkit.evaluate's PGD-40 curve (no checks, no pictures: the curve alone is timed)."""
    rep = advkit.evaluate(model, (x, y), attacks={"pgd": lambda m: PGD(m, steps=STEPS)}, eps=grid,
                          batch_size=batch_size, device=device, progress=False, checks=False, examples=0,
                          survivors=survivors, warm_start=warm_start)
    return [acc for _, acc in rep.curve["pgd"]]


def theirs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[float], batch_size: int,
           device: str) -> list[float]:
    """torchattacks' PGD-40 on every sample at every eps > 0 (eps 0: the clean images), accuracy
    of the model on the result."""
    import torchattacks

    accs = []
    for eps in grid:
        atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS, random_start=True)
        correct = 0
        for s in range(0, len(x), batch_size):
            xb, yb = x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)
            x_adv = atk(xb, yb) if eps > 0 else xb
            with frozen(model), torch.no_grad():
                correct += int((model(x_adv).argmax(1) == yb).sum())
        accs.append(correct / len(x))
    return accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(parser, n=500, batch_size=256)
    parser.add_argument("--grid", type=lambda t: [float(e) for e in t.split(",")], default=GRID,
                        help="comma-separated eps grid (default: %(default)s)")
    parser.add_argument("--full", action="store_true", help="also time advkit with survivors=False")
    parser.add_argument("--fresh", action="store_true", help="also time advkit with warm_start=False")
    args = parser.parse_args()
    model, x, y, device = setup(args)

    grid = sorted(args.grid)
    sides = {"advkit (survivors)": lambda: ours(model, x, y, grid, args.batch_size, args.device),
             "torchattacks (every eps)": lambda: theirs(model, x, y, grid, args.batch_size, args.device)}
    if args.full:
        sides["advkit (every eps)"] = lambda: ours(model, x, y, grid, args.batch_size, args.device, survivors=False)
    if args.fresh:
        sides["advkit (survivors, fresh starts)"] = lambda: ours(model, x, y, grid, args.batch_size, args.device,
                                                                 warm_start=False)
    times: dict[str, list[float]] = {name: [] for name in sides}
    curves: dict[str, list[float]] = {}
    for rep in range(args.reps):
        for name, fn in sides.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            curves[name] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
        print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)

    names = list(sides)
    ref = "torchattacks (every eps)"
    print(f"\nPGD-{STEPS} curve on {args.n} mnist5k test images, {len(grid)} eps, device {args.device}, "
          f"{torch.get_num_threads()} threads, median of {args.reps}\n")
    print("| eps | " + " | ".join(names) + " | ours <= theirs |")
    print("|---|" + "---|" * (len(names) + 1))
    for j, eps in enumerate(grid):
        ok = curves[names[0]][j] <= curves[ref][j]
        print(f"| {eps:g} | " + " | ".join(f"{curves[n][j]:.1%}" for n in names) + f" | {'yes' if ok else 'NO'} |")
    print("\n| side | median s | / torchattacks |")
    print("|---|---|---|")
    med = {n: statistics.median(t) for n, t in times.items()}
    for n in names:
        print(f"| {n} | {med[n]:.2f} | {med[n] / med[ref]:.3f} |")
    # each repetition's ours/theirs ratio is measured back to back: its median resists load drifting between reps
    ratio = statistics.median(a / b for a, b in zip(times[names[0]], times[ref], strict=True))
    strength = all(curves[names[0]][j] <= curves[ref][j] for j in range(len(grid)))
    verdict = "PASS" if ratio <= 1 / 3 and strength else "FAIL"
    print(f"\n{verdict}: median per-repetition time ratio {ratio:.3f} (target <= 0.333), "
          f"ours never above torchattacks: {strength}")


if __name__ == "__main__":
    main()

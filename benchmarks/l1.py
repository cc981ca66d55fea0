"""advkit's AutoAttack under L1 against the official one (``pyautoattack`` ``norm="L1"``), side by side in
one process: robust accuracy and time of the standard version on the same model and images, per seed.

    pip install 'advkit[autoattack]'
    python benchmarks/l1.py --n 500 --eps 10 --seeds 0 1 2

The model is benchmarks/autoattack.py's PGD-trained SmallCNN (L-inf, eps 0.3; cached in --model). The
official L1 version runs APGD-CE (5 restarts), APGD-T (5 targets), FAB-T and Square; advkit's runs its
APGD-CE, APGD-T and FAB-T with the same budgets (advkit has no Square under L1 yet). Each seed runs ours
then theirs; CPU seconds of this process, one thread.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

import advkit
from advkit.attacks import AutoAttack

sys.path.insert(0, str(Path(__file__).parent))
from autoattack import cached_robust_cnn  # noqa: E402


def official(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int,
             batch_size: int) -> torch.Tensor:
    """Per-sample robustness under the official standard AutoAttack at L1."""
    from pyautoattack import AutoAttack as OfficialAutoAttack

    atk = OfficialAutoAttack(model, norm="L1", eps=eps, version="standard", seed=seed, device=x.device)
    x_adv, _ = atk.run_standard_evaluation(x, y, batch_size=batch_size)
    assert float((x_adv - x).abs().flatten(1).sum(1).amax()) <= eps * (1 + 1e-5)
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    """Per-sample robustness under advkit's AutoAttack at L1."""
    res = AutoAttack(model, eps=eps, norm="l1", seed=seed, progress=False).run(x, y)
    assert float((res.x_adv - x).abs().flatten(1).sum(1).amax()) <= eps * (1 + 1e-5)
    return ~res.success


def timed(fn, *args) -> tuple[torch.Tensor, float]:
    cpu = time.process_time()
    out = fn(*args)
    return out, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="mnist5k test images")
    parser.add_argument("--eps", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=500, help="the official code's batch size")
    parser.add_argument("--model", type=Path, default=Path(tempfile.gettempdir()) / "advkit_bench_robust_cnn.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    model = cached_robust_cnn(args.model)
    x, y = (t[:args.n] for t in advkit.data.load("mnist5k")[1].tensors)
    with torch.no_grad():
        clean = int((model(x).argmax(1) == y).sum())
    print(f"AutoAttack standard, L1 eps={args.eps}, {args.n} mnist5k test images (clean {clean}/{args.n}), 1 thread")
    print(f"{'seed':>4s}{'advkit robust':>15s}{'cpu s':>8s}{'official robust':>17s}{'cpu s':>8s}")
    for seed in args.seeds:
        mine, t_mine = timed(ours, model, x, y, args.eps, seed)
        theirs, t_theirs = timed(official, model, x, y, args.eps, seed, args.batch_size)
        print(f"{seed:4d}{float(mine.float().mean()):15.1%}{t_mine:8.1f}{float(theirs.float().mean()):17.1%}"
              f"{t_theirs:8.1f}", flush=True)


if __name__ == "__main__":
    main()

"""advkit's AutoAttack under L1 against the official one (``pyautoattack`` ``norm="L1"``), side by side in
one process: robust accuracy and time of the standard version on the same model and images, per seed.

    pip install 'advkit[autoattack]'
    python benchmarks/l1.py --n 500 --eps 10 --seeds 0 1 2
    python benchmarks/l1.py --n 100 --parts apgd     # APGD-CE and APGD-T alone, both sides
    python benchmarks/l1.py --n 100 --parts square   # Square alone (5,000 queries), both sides

The model is benchmarks/autoattack.py's PGD-trained SmallCNN (L-inf, eps 0.3; cached in --model). The
official L1 version runs APGD-CE (5 restarts), APGD-T (5 targets), FAB-T and Square (5,000 queries);
advkit's runs its own four with the same budgets. ``--parts apgd`` runs the two APGDs alone on each side
(the official ``version="custom"`` with the standard L1 settings); ``--parts square`` runs Square alone on
every image (the official standalone ``SquareAttack``, whose schedule is stretched to the budget, as
advkit's default). Each seed runs ours then theirs; CPU seconds of this process, one thread.
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
from advkit.attacks import AutoAttack, Square

sys.path.insert(0, str(Path(__file__).parent))
from autoattack import cached_robust_cnn  # noqa: E402

#: What ``--parts`` runs on each side: the whole standard version, its two APGDs, or Square alone.
PARTS = {"all": ("apgd-ce", "apgd-t", "fab-t", "square"), "apgd": ("apgd-ce", "apgd-t"), "square": ("square",)}


def official(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int,
             batch_size: int, parts: str = "all") -> torch.Tensor:
    """Per-sample robustness under the official standard AutoAttack at L1 (``parts``: all of it, its
    APGD-CE and APGD-T with the standard L1 settings, or its Square alone with the standalone defaults)."""
    from pyautoattack import AutoAttack as OfficialAutoAttack
    from pyautoattack.square import SquareAttack

    if parts == "square":
        x_adv = SquareAttack(model, norm="L1", eps=eps, n_queries=5000, seed=seed, device=x.device).perturb(x, y)
    else:
        custom = parts != "all"
        atk = OfficialAutoAttack(model, norm="L1", eps=eps, version="custom" if custom else "standard", seed=seed,
                                 device=x.device, attacks=list(PARTS[parts]) if custom else None)
        if custom:  # the standard L1 version's settings (its _set_version)
            atk.apgd.use_largereps = atk.apgd_targeted.use_largereps = True
            atk.apgd.n_restarts, atk.apgd_targeted.n_target_classes, atk.apgd_targeted.n_restarts = 5, 5, 1
        x_adv, _ = atk.run_standard_evaluation(x, y, batch_size=batch_size)
    assert float((x_adv - x).abs().flatten(1).sum(1).amax()) <= eps * (1 + 1e-5)
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int,
         parts: str = "all") -> torch.Tensor:
    """Per-sample robustness under advkit's AutoAttack at L1 (``parts`` as in :func:`official`)."""
    if parts == "square":
        res = Square(model, eps, norm="l1", seed=seed, progress=False).run(x, y)
    else:
        atk = AutoAttack(model, eps=eps, norm="l1", seed=seed, progress=False)
        atk.components = [c for c in atk.components if c.name in PARTS[parts]]
        res = atk.run(x, y)
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
    parser.add_argument("--parts", choices=sorted(PARTS), default="all",
                        help="the whole standard version, its APGD-CE and APGD-T, or Square alone")
    parser.add_argument("--model", type=Path, default=Path(tempfile.gettempdir()) / "advkit_bench_robust_cnn.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    model = cached_robust_cnn(args.model)
    x, y = (t[:args.n] for t in advkit.data.load("mnist5k")[1].tensors)
    with torch.no_grad():
        clean = int((model(x).argmax(1) == y).sum())
    print(f"AutoAttack standard ({', '.join(PARTS[args.parts])}), L1 eps={args.eps}, {args.n} mnist5k test "
          f"images (clean {clean}/{args.n}), 1 thread")
    print(f"{'seed':>4s}{'advkit robust':>15s}{'cpu s':>8s}{'official robust':>17s}{'cpu s':>8s}")
    for seed in args.seeds:
        mine, t_mine = timed(ours, model, x, y, args.eps, seed, args.parts)
        theirs, t_theirs = timed(official, model, x, y, args.eps, seed, args.batch_size, args.parts)
        print(f"{seed:4d}{float(mine.float().mean()):15.1%}{t_mine:8.1f}{float(theirs.float().mean()):17.1%}"
              f"{t_theirs:8.1f}", flush=True)


if __name__ == "__main__":
    main()

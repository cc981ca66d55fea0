"""advkit's AutoAttack against the official one (``pyautoattack``, the authors' code), side by side
in one process: robust accuracy and time of the standard version on the same model and images.

    pip install 'advkit[autoattack]'
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python benchmarks/autoattack.py

The model is a small adversarially trained CNN (PGD training on mnist5k, about a minute on one
core, cached in --model). Repetitions alternate ours and theirs so background load hits both;
each cell is the median. CPU seconds (this process's) are less disturbed by other processes on a
shared machine than wall seconds; with one thread they are the work done.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import advkit
from advkit.attacks import PGD, AutoAttack
from advkit.core import Hook, OptimizerStep, Player, play, trainable_params


def robust_cnn(epochs: int = 3, eps: float = 0.3, steps: int = 3, batch_size: int = 100,
               seed: int = 0) -> torch.nn.Module:
    """A SmallCNN (width 16) trained on mnist5k against PGD-``steps`` with eps ramped up to ``eps`` over
    the first half of training, Adam with a one-cycle learning rate, through :func:`advkit.core.play`."""
    torch.manual_seed(seed)
    x, y = advkit.data.load("mnist5k")[0].tensors
    model = advkit.models.SmallCNN(width=16, hidden=64)
    per_epoch = len(x) // batch_size
    rounds = epochs * per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=rounds, pct_start=0.3)
    gen = torch.Generator().manual_seed(seed)

    def batches():
        while True:
            perm = torch.randperm(len(x), generator=gen)
            yield from perm[:per_epoch * batch_size].view(per_epoch, batch_size)

    stream, done = batches(), []

    class Schedule(Hook):
        def outer_step(self, r: int, loss: torch.Tensor) -> None:
            sched.step()
            done.append(r)

    def loss() -> torch.Tensor:
        idx = next(stream)
        bx, by = x[idx], y[idx]
        e = eps * min(1.0, len(done) / (0.5 * rounds))
        if e > 0:
            bx = PGD(model, eps=e, steps=steps, alpha=2.5 * e / steps, early_stop=False, seed=len(done))(bx, by)
        model.train()
        return F.cross_entropy(model(bx), by)

    play(outer=Player(trainable_params(model), OptimizerStep(opt)), outer_loss=loss, rounds=rounds, hooks=[Schedule()])
    return model.eval()


def cached_robust_cnn(path: Path) -> torch.nn.Module:
    """:func:`robust_cnn`, loaded from ``path`` when it holds one, else trained and saved there."""
    model = advkit.models.SmallCNN(width=16, hidden=64)
    if path.exists():
        advkit.models.load_state_dict(model, path)
        return model.eval()
    start = time.process_time()
    model = robust_cnn()
    print(f"trained the robust CNN in {time.process_time() - start:.0f} CPU s", flush=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model


def official(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int,
             seed: int = 0) -> torch.Tensor:
    """Per-sample robustness under the official standard AutoAttack (L-inf, ``seed``)."""
    from pyautoattack import AutoAttack as OfficialAutoAttack

    atk = OfficialAutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, device=x.device)
    x_adv, _ = atk.run_standard_evaluation(x, y, batch_size=batch_size)
    assert float((x_adv - x).abs().amax()) <= eps + 1e-6
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    """Per-sample robustness under advkit's AutoAttack (L-inf, ``seed``)."""
    return ~AutoAttack(model, eps=eps, norm="linf", seed=seed).run(x, y).success


def timed(fn, *args) -> tuple[torch.Tensor, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="mnist5k test images")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions; medians are reported")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=250, help="the official code's batch size")
    parser.add_argument("--model", type=Path, default=Path(tempfile.gettempdir()) / "advkit_bench_robust_cnn.pt")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    model = cached_robust_cnn(args.model)
    x, y = (t[:args.n] for t in advkit.data.load("mnist5k")[1].tensors)
    with torch.no_grad():
        clean = int((model(x).argmax(1) == y).sum())
    runs: dict[str, list[tuple[int, float, float]]] = {"advkit": [], "official": []}
    for _ in range(args.reps):
        for name, fn, extra in (("advkit", ours, ()), ("official", official, (args.batch_size,))):
            robust, wall, cpu = timed(fn, model, x, y, args.eps, *extra)
            runs[name].append((int(robust.sum()), wall, cpu))
            print(f"  {name:8s} robust {int(robust.sum())}/{args.n}  wall {wall:6.1f} s  cpu {cpu:6.1f} s", flush=True)
    print(f"\nAutoAttack standard, L-inf eps={args.eps}, {args.n} mnist5k test images (clean {clean}/{args.n}), "
          f"{args.threads} thread(s), medians of {args.reps}")
    print(f"{'':10s}{'robust':>8s}{'wall s':>9s}{'cpu s':>9s}")
    med = {k: [statistics.median(v[i] for v in rows) for i in range(3)] for k, rows in runs.items()}
    for name, (robust, wall, cpu) in med.items():
        print(f"{name:10s}{robust:8.0f}{wall:9.1f}{cpu:9.1f}")
    ratios = [med["advkit"][i] / med["official"][i] for i in (1, 2)]
    print(f"{'ratio':10s}{'':8s}{ratios[0]:9.2f}{ratios[1]:9.2f}   (advkit / official; < 1: ours faster)")


if __name__ == "__main__":
    main()

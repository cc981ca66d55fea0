"""Attack speed and strength, advkit vs torchattacks, side by side in one process.

Run (the allocator settings matter on small CPUs: glibc's page faults otherwise swing PyTorch CPU
timings by up to 40% between runs):

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python benchmarks/attacks.py
    ... python benchmarks/attacks.py --device cuda --amp      # also the bf16 autocast rows

Every row attacks the same images in the same batches with the same trained SmallCNN (trained
once with advkit.train.fit and cached, see --model). Repetitions are interleaved (ours, theirs,
floor, ours, ...) so background load hits every column alike; each cell is the median.

Columns: images/s of ours and of torchattacks' equivalent (same eps, steps and alpha); ours/theirs
is the ratio of times (< 1: ours faster); ours/floor compares with a bare loop of steps x
(forward + backward to the input) on the same batches, the least any gradient attack must pay.
"PGD-k (no early stop)" is the honest per-step overhead of our engine (aim: <= 1.05x the floor);
the default PGD stops per sample once fooled, which is why it can beat the floor. Robust accuracy
(ours / theirs) sits in the same row, so speed is read together with strength.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import advkit
from advkit.attacks import ATTACKS, FGSM, PGD
from advkit.core import frozen

AttackFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Row:
    """A group of table lines sharing torchattacks' equivalent (or None) and the floor's steps:
    one line per variant of ours (e.g. PGD with and without early stopping)."""

    steps: int
    ours: dict[str, AttackFn]
    theirs: AttackFn | None


def common_args(parser: argparse.ArgumentParser, n: int, batch_size: int) -> None:
    """The options every benchmark shares: device, data size, repetitions, threads, cached model."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--n", type=int, default=n, help="mnist5k test images")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions; medians are reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--model", type=Path, default=Path(tempfile.gettempdir()) / "advkit_bench_smallcnn_mnist5k.pt")


def setup(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.device]:
    """Threads, device, the cached model and the first ``n`` mnist5k test images (on the CPU)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y = advkit.data.load("mnist5k")[1].tensors
    return load_model(args.model, device), x[:args.n], y[:args.n], device


def load_model(path: Path, device: torch.device,
               augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None) -> torch.nn.Module:
    """The cached SmallCNN, or train one on mnist5k (8 epochs, seed 0, ``augment`` as in
    ``advkit.train.fit``) and cache it atomically."""
    model = advkit.models.SmallCNN()
    if path.exists():
        advkit.models.load_state_dict(model, path)
    else:
        print(f"training a SmallCNN on mnist5k (cached at {path}) ...")
        advkit.train.fit(model, advkit.data.load("mnist5k")[0], epochs=8, seed=0, device="cpu", augment=augment)
        advkit.files.save_tensors(model.state_dict(), path)
    return model.to(device).eval()


def floor(model: torch.nn.Module, steps: int) -> AttackFn:
    """``steps`` x (forward + backward to the input), nothing else: the cost floor of a gradient attack."""

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with frozen(model):
            xa = x.clone().requires_grad_(True)
            for _ in range(steps):
                (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y), xa)
        return x

    return run


def rows(model: torch.nn.Module, eps: float, amp: bool) -> list[Row]:
    """The compared attacks; APGD appears once it is registered in ``advkit.attacks.ATTACKS``
    (40 steps, like PGD-40, one restart)."""
    import torchattacks

    def pgd(steps: int) -> Row:
        alpha = 2.5 * eps / steps
        ours = {f"PGD-{steps}": PGD(model, eps=eps, steps=steps, alpha=alpha, amp=amp),
                f"PGD-{steps} (no early stop)": PGD(model, eps=eps, steps=steps, alpha=alpha, amp=amp,
                                                   early_stop=False)}
        return Row(steps, ours, torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps))

    table = [Row(1, {"FGSM": FGSM(model, eps=eps, amp=amp)}, torchattacks.FGSM(model, eps=eps)), pgd(10), pgd(40)]
    if "apgd" in ATTACKS:
        table.append(Row(40, {"APGD-CE-40": ATTACKS["apgd"](model, eps=eps, steps=40, amp=amp)},
                         torchattacks.APGD(model, eps=eps, steps=40, n_restarts=1, loss="ce", seed=0)))
    return table


def timed(fn: AttackFn, batches: list[tuple[torch.Tensor, torch.Tensor]],
          autocast: bool) -> tuple[float, list[torch.Tensor]]:
    """Seconds to run ``fn`` over every batch (CUDA synchronised), and its outputs."""
    sync = torch.cuda.synchronize if batches[0][0].is_cuda else (lambda: None)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else nullcontext()
    sync()
    start = time.perf_counter()
    with ctx:
        out = [fn(x, y) for x, y in batches]
    sync()
    return time.perf_counter() - start, out


def robust_accuracy(model: torch.nn.Module, outs: list[torch.Tensor], batches) -> float:
    with torch.no_grad():
        correct = sum(int((model(xa).argmax(1) == y).sum()) for xa, (_, y) in zip(outs, batches, strict=True))
    return correct / sum(len(y) for _, y in batches)


def measure(model, table: list[Row], batches, reps: int, amp: bool) -> list[dict]:
    """Interleaved repetitions of every column of every row; one result line per variant of ours,
    with medians and robust accuracies. Ours gets bf16 through its own ``amp`` flag; torchattacks
    and the floor run under autocast."""
    times: dict[str, list[float]] = {}
    acc: dict[str, float] = {}
    for _ in range(reps):
        for i, row in enumerate(table):
            columns = [(name, fn, False) for name, fn in row.ours.items()]
            columns += [(f"theirs{i}", row.theirs, amp)] if row.theirs is not None else []
            for key, fn, autocast in columns + [(f"floor{i}", floor(model, row.steps), amp)]:
                seconds, outs = timed(fn, batches, autocast)
                times.setdefault(key, []).append(seconds)
                if not key.startswith("floor"):
                    acc[key] = robust_accuracy(model, outs, batches)
    med = {key: statistics.median(values) for key, values in times.items()}
    n = sum(len(y) for _, y in batches)
    return [{"name": name, "n": n, "ours": med[name], "theirs": med.get(f"theirs{i}"), "floor": med[f"floor{i}"],
             "acc_ours": acc[name], "acc_theirs": acc.get(f"theirs{i}")}
            for i, row in enumerate(table) for name in row.ours]


def print_table(results: list[dict], title: str) -> None:
    print(f"\n{title}")
    head = (f"{'attack':<24}{'ours img/s':>11}{'theirs img/s':>13}{'ours/theirs':>12}{'ours/floor':>11}"
            f"{'rob.acc ours/theirs':>21}")
    print(head + "\n" + "-" * len(head))
    for r in results:
        theirs = f"{r['n'] / r['theirs']:>13.0f}" if r["theirs"] else f"{'-':>13}"
        ratio = f"{r['ours'] / r['theirs']:>12.2f}" if r["theirs"] else f"{'-':>12}"
        acc = f"{100 * r['acc_ours']:.1f}% / " + ("-" if r["acc_theirs"] is None else f"{100 * r['acc_theirs']:.1f}%")
        print(f"{r['name']:<24}{r['n'] / r['ours']:>11.0f}{theirs}{ratio}{r['ours'] / r['floor']:>11.2f}{acc:>21}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(parser, n=256, batch_size=128)
    parser.add_argument("--amp", action="store_true", help="on CUDA: also measure under bf16 autocast")
    parser.add_argument("--eps", type=float, default=0.1, help="L-inf budget (0.1: a fair share of images survive)")
    args = parser.parse_args()
    model, x, y, device = setup(args)
    x, y = x.to(device), y.to(device)
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size]) for i in range(0, len(x), args.batch_size)]
    info = (f"{device} ({torch.get_num_threads()} threads), {len(x)} images in batches of {args.batch_size}, "
            f"eps={args.eps}, {args.reps} reps")
    modes = [False, True] if args.amp and device.type == "cuda" else [False]
    for amp in modes:
        results = measure(model, rows(model, args.eps, amp), batches, args.reps, amp)
        print_table(results, f"{'bf16 autocast' if amp else 'fp32'} on {info}")


if __name__ == "__main__":
    main()

"""``advkit evaluate`` (a saved model against a list of attacks) and ``advkit demo`` (the main job)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..data import NAMES, load
from ..models import ARCHS, build
from .evaluate import evaluate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="robust accuracy of a saved model versus eps; writes a report folder")
    p.add_argument("--model", required=True, type=Path, help="state_dict checkpoint (loaded with weights_only=True)")
    p.add_argument("--arch", default="smallcnn", choices=sorted(ARCHS), help="architecture of the checkpoint")
    p.add_argument("--data", default="mnist5k", choices=NAMES, help="dataset; its test split is evaluated")
    p.add_argument("--root", default=None, help="folder of the torchvision datasets")
    p.add_argument("--attacks", default="fgsm,pgd", type=_names, help="comma-separated attack names (or autoattack)")
    p.add_argument("--eps", default="0,0.1,0.2,0.3", type=_floats, help="comma-separated budgets; 0 is clean accuracy")
    p.add_argument("--norm", default="linf", choices=("linf", "l2"))
    p.add_argument("--n", type=int, default=None, help="evaluate the first N test samples")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh-starts", action="store_true",
                   help="start each eps's attack from a random point, not where the previous eps's search ended")
    p.add_argument("--probe", type=int, default=100, help="samples for the sanity checks (0: no checks)")
    p.add_argument("--queries", type=int, default=500, help="query budget of the checks' gradient-free attack")
    p.add_argument("--out", type=Path, default=Path("advkit-report"), help="report folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_evaluate)

    d = sub.add_parser("demo", help="the main job: train a SmallCNN on MNIST-5k, evaluate it, write the report")
    d.add_argument("--out", type=Path, default=Path("advkit-demo"), help="report folder")
    d.add_argument("--quick", action="store_true", help="smaller budgets: under a minute on 2 CPU cores")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default=None)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=_demo)


def _evaluate(args: argparse.Namespace) -> int:
    _, test = load(args.data, root=args.root)
    channels, side = test[0][0].shape[0], test[0][0].shape[-1]
    kwargs = {"in_channels": channels}
    if args.arch == "smallcnn":
        kwargs["input_size"] = side
    model = build(args.arch, **kwargs)
    model.load_state_dict(torch.load(args.model, map_location="cpu", weights_only=True))
    report = evaluate(model.eval(), test, attacks=args.attacks, eps=args.eps, norm=args.norm, n=args.n,
                      batch_size=args.batch_size, device=args.device, seed=args.seed, progress=not args.no_progress,
                      warm_start=not args.fresh_starts, checks=args.probe > 0, probe=args.probe, queries=args.queries)
    return _show(report, report.save(args.out))


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    start = time.perf_counter()
    report = run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device, progress=not args.no_progress)
    print(f"demo finished in {time.perf_counter() - start:.1f} s")
    return _show(report, args.out / "report.html")


def _show(report, path: Path) -> int:
    """Print the accuracy table, the checks and the report's path; exit status 0."""
    print(report.table())
    for check in report.checks:
        print(f"[{check.status}] {check.model} {check.name}: {check.message}")
    print(f"report: {path.resolve()}")
    return 0


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one attack name")
    return names


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"eps must be comma-separated numbers, got {text!r}") from None

"""``advkit certify``: a saved model's smoothed classifier (Cohen et al. 2019), its certified accuracy against the
L2 radius beside its accuracy under attack, as a report folder (``evaluate(..., norm="l2", smoothing=...)``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..acceleration import add_gpu_options, gpu_options
from ..data import NAMES, load
from ..distributed import is_main
from ..evaluation.evaluate import evaluate
from ..evaluation.smoothed import SmoothingOptions
from ..evaluation.specs import resolve
from ..evaluation.tables import smoothing_tables, to_markdown
from ..outputs import save_or_rescue
from .evaluate_cli import (
    add_arch_options,
    attack_names,
    check_model_options,
    check_report_folder,
    cli_model,
    eps_grid,
    image_options,
    library_model,
    positive_int,
    print_report,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certify", help="certified L2 accuracy of a saved model under randomized smoothing; "
                                       "writes a report folder",
                       description="Randomized smoothing (Cohen et al. 2019): CERTIFY each test image of the model's "
                                   "smoothed classifier (a class or an abstention, and a certified L2 radius with "
                                   "failure probability alpha), the certified accuracy at each radius beside the "
                                   "accuracy of the same smoothed classifier under L2 attacks with expectation over "
                                   "its noise (judged by PREDICT); writes a report folder. The model is given as for "
                                   "advkit evaluate.")
    p.add_argument("--model", "--weights", type=Path, default=None,
                   help="a state dict (loaded with weights_only=True) or a TorchScript archive")
    add_arch_options(p)
    p.add_argument("--model-factory", default=None, metavar="MODULE:FUNCTION",
                   help="a function returning the nn.Module to certify; --model, if given, is loaded into it")
    p.add_argument("--data", default="mnist5k", choices=NAMES, help="dataset; its test split is certified")
    p.add_argument("--root", default=None, help="folder of the dataset's files")
    p.add_argument("--sigma", type=float, required=True, help="the smoothing noise's standard deviation (> 0)")
    p.add_argument("--n0", type=positive_int, default=100, help="CERTIFY's selection draws per image")
    p.add_argument("--n", type=positive_int, default=10_000, help="CERTIFY's estimation draws per image")
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability of CERTIFY and PREDICT")
    p.add_argument("--radii", default="0,0.25,0.5,0.75,1", type=eps_grid, help="comma-separated L2 radii")
    p.add_argument("--limit", type=positive_int, default=None, help="certify the first N test images")
    p.add_argument("--attacks", default="pgd", type=attack_names,
                   help="the L2 attacks on the smoothed classifier (each gradient averaged over --eot noise draws), "
                        "comma-separated; they also draw the base model's own curve")
    p.add_argument("--eot", type=positive_int, default=20, help="noise draws per attack gradient")
    p.add_argument("--predict-n", type=positive_int, default=1000, help="PREDICT's draws per attacked image")
    p.add_argument("--no-attack", action="store_true", help="the certified curve alone (no attack on the smoothed "
                                                            "classifier)")
    p.add_argument("--batch-size", type=positive_int, default=1000, help="noisy copies per forward")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("advkit-certify"), help="report folder")
    p.add_argument("--no-progress", action="store_true")
    add_gpu_options(p, "the base classifier's forwards (the counts and the attacks)")
    p.set_defaults(func=_certify, norm="l2", resize=None, crop=None, subset=None)


def _certify(args: argparse.Namespace) -> int:
    resolve(args.attacks)  # unknown attack names fail here, before any loading
    smoothing = SmoothingOptions(args.sigma, n0=args.n0, n=args.n, alpha=args.alpha, predict_n=args.predict_n,
                                 eot=args.eot, batch_size=args.batch_size, empirical=not args.no_attack)
    check_report_folder(args.out, "--out")
    check_model_options(args)
    library = library_model(args)
    _, test = load(args.data, root=args.root, **image_options(args, library))
    model = cli_model(args, test[0][0], library)
    report = evaluate(model.eval(), test, attacks=args.attacks, eps=args.radii, norm="l2", n=args.limit,
                      device=args.device, seed=args.seed, progress=not args.no_progress, checks=False,
                      smoothing=smoothing, **gpu_options(args))
    path = save_or_rescue(args.out, report.save, "the report", "report")
    if not is_main():
        return 0
    for result in report.results.values():
        print(to_markdown(smoothing_tables(result)[0]) + "\n")
    return print_report(report, path)

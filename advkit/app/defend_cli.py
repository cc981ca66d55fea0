"""``advkit defend``: make a model robust with one defense and write the model and a before/after report.

The model before is the user's (``--model``/``--arch``/``--model-factory``, as ``advkit evaluate``
takes it) or a standard :func:`~advkit.defenses.defense_model` trained here with
:func:`advkit.train.fit`. The defense trains a copy of it, starting from its weights; both models
are then evaluated in one report with the model before as the baseline (``evaluate(...,
baseline="before")``), so every report format shows the change in clean accuracy and the robust gain.

Under torchrun (``torchrun --nproc_per_node 2 -m advkit -- defend ...``) every rank runs the command:
the standard model is trained whole on every rank (the same seed, so the same weights; it is not
sharded), adversarial training and the evaluation are sharded, and only rank 0 prints and writes
``--out`` (and the checkpoints).
"""
from __future__ import annotations

import argparse
import copy
import math
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..acceleration import add_gpu_options, gpu_options
from ..checkpoints import CheckpointFolder, new_run_id
from ..core import NORMS
from ..data import TRAINING_NAMES, load
from ..defenses.augment import augmented_training
from ..defenses.ema import check_ema
from ..defenses.finetune import finetune
from ..defenses.gaussian import GaussianOptions, gaussian_training
from ..defenses.history import History
from ..defenses.methods import COMMON, TRAINING_METHODS
from ..defenses.registry import DEFENSES, defenses_text
from ..defenses.training import CHECKPOINT_PREFIX, adversarial_training, defense_model
from ..distributed import is_main
from ..evaluation import evaluate
from ..evaluation.specs import DEFAULT_ATTACKS, resolve
from ..files import save_tensors
from ..models import External, is_torchscript
from ..outputs import check_folder, save_or_rescue
from ..train import accuracy, fit
from ..validation import check_eps
from .demo import PhaseLog
from .evaluate_cli import (
    add_arch_options,
    add_corruptions_option,
    attack_names,
    check_report_folder,
    cli_model,
    eps_grid,
    eps_number,
    library_model,
    non_negative_int,
    positive_int,
    print_report,
)
from .usage import UsageError

#: The names of the two models in the report (and of their weight files, ``NAME.pt``).
BEFORE, AFTER = "before", "after"

DESCRIPTION = """\
Make a model robust and write it with a before/after report into --out:
  after.pt    the defended model's state dict (before.pt: the standard model, when trained here)
  report.*    both models under the attacks over an eps grid, with the change in clean accuracy,
              the robust gain per eps, the sanity checks and the defense's history
{methods}
Without --model a standard SmallCNN is trained first (--train-epochs); every defense starts from
the model before."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``defend`` subcommand."""
    p = sub.add_parser("defend", help="make a model robust (adversarial training, fine-tuning, augmentation); "
                                      "writes the model and a before/after report",
                       description=DESCRIPTION.format(methods=textwrap.fill(f"Methods: {defenses_text()}.", 100)),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, choices=tuple(DEFENSES))
    p.add_argument("--data", default="mnist5k", choices=TRAINING_NAMES,
                   help="trains on its training split, reports on its test")
    p.add_argument("--root", default=None, help="folder of the torchvision datasets")
    p.add_argument("--eps", default=0.3, type=eps_number, help="the budget the defense trains for (default 0.3)")
    p.add_argument("--norm", default="linf", choices=tuple(NORMS))
    p.add_argument("--sigma", default=None, type=positive_float,
                   help="--method gaussian: the noise level trained for, the certification sigma (default 0.25)")
    p.add_argument("--smoothadv-eps", default=None, type=eps_number,
                   help="--method gaussian: SmoothAdv's L2 budget (default 0: Gaussian augmentation alone)")
    p.add_argument("--smoothadv-steps", default=None, type=positive_int,
                   help=f"--method gaussian: SmoothAdv's PGD steps (default {GaussianOptions.smoothadv_steps})")
    p.add_argument("--smoothadv-samples", default=None, type=positive_int,
                   help=f"--method gaussian: noise draws of the smoothed classifier SmoothAdv attacks "
                        f"(default {GaussianOptions.smoothadv_samples})")
    p.add_argument("--smoothadv-warmup", default=None, type=unit_float,
                   help=f"--method gaussian: the share of training over which SmoothAdv's eps grows from 0, "
                        f"in [0, 1] (default {GaussianOptions.smoothadv_warmup:g})")
    p.add_argument("--model", "--weights", type=Path, default=None,
                   help="the model before: a state dict (torch.save(model.state_dict())) of --arch or of the "
                        "--model-factory's module (with --arch robustbench:NAME, RobustBench's model_dir); "
                        "default: train a standard SmallCNN here")
    add_arch_options(p)
    p.add_argument("--model-factory", default=None, metavar="MODULE:FUNCTION",
                   help="a function returning the model before (--model, if given, is loaded into it)")
    p.add_argument("--train-epochs", type=positive_int, default=8,
                   help="epochs of plain training of the standard model (without --model)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs of the defense (default: the method's)")
    p.add_argument("--awp", type=float, nargs="?", const=5e-3, default=None, metavar="GAMMA",
                   help=f"adversarial weight perturbation of GAMMA times the weights' norm (--method "
                        f"{', '.join(with_option('awp'))}; alone: 5e-3)")
    p.add_argument("--ema", type=float, nargs="?", const=0.995, default=None, metavar="DECAY",
                   help="end with, evaluate and save an exponential moving average of the weights "
                        "(every method; alone: 0.995)")
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help=f"checkpoint the defense ({', '.join(checkpointed())}) there after every epoch")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in --checkpoint-dir")
    p.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS), type=attack_names,
                   help=f"attacks of the report (default {','.join(DEFAULT_ATTACKS)})")
    p.add_argument("--eval-eps", default=None, type=eps_grid,
                   help="the report's eps grid (default: 0, eps/4, eps/2, 3eps/4, eps)")
    p.add_argument("--n", type=positive_int, default=500, help="test images evaluated (default 500)")
    p.add_argument("--probe", type=non_negative_int, default=100, help="samples for the sanity checks (0: no checks)")
    p.add_argument("--queries", type=positive_int, default=500, help="query budget of the checks' gradient-free attack")
    add_corruptions_option(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("advkit-defense"), help="output folder (default ./advkit-defense)")
    add_gpu_options(p, "the networks (training with --method pgd, trades or fgsm-rs, and the evaluation)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_args(args)
    main = is_main()  # under torchrun only rank 0 prints and writes
    progress = not args.no_progress and main
    phases = PhaseLog(3, progress, say=None if main else (lambda line: None))
    library = library_model(args)
    train, test = load(args.data, root=args.root, seed=args.seed)
    sample = test[0][0]
    trained_here = args.model is None and args.model_factory is None and library is None
    if trained_here:
        shape = (sample.shape[0], train.num_classes, sample.shape[-1])
        architecture = f"advkit.defenses.defense_model{shape} (--arch smallcnn-wide)"
        phases.start(f"training a standard {architecture} on {args.data} ({args.train_epochs} epochs)")
        torch.manual_seed(args.seed)
        before = defense_model(*shape)
        fit(before, train, epochs=args.train_epochs, seed=args.seed, device=args.device, progress=progress)
        phases.end(f"trained: test accuracy {accuracy(before.eval(), test):.1%}")
    else:
        architecture = f"the architecture of {args.model_factory or args.arch or 'smallcnn'}"
        phases.start(f"loading the model before ({args.model or args.model_factory or args.arch})")
        before = cli_model(args, sample, library).eval()
        phases.end(f"loaded: test accuracy {accuracy(before, test):.1%}")
    phases.start(f"defending: {args.method} {strength(args)}")
    started = time.perf_counter()
    after, history = defend(copy.deepcopy(before), train, test, args, progress)
    seconds = time.perf_counter() - started
    phases.end(f"defended: test accuracy {accuracy(after, test):.1%}")
    phases.start(f"evaluating both: {', '.join(args.attacks)} on {args.n} test images")
    corruptions = args.corruptions or args.method == "augment"
    report = evaluate({BEFORE: before, AFTER: after}, test, attacks=args.attacks, eps=eval_grid(args), norm=args.norm,
                      n=args.n, device=args.device, seed=args.seed, progress=progress, checks=args.probe > 0,
                      probe=args.probe, queries=args.queries, corruptions=corruptions, baseline=BEFORE,
                      **gpu_options(args))
    weights = f"`{AFTER}.pt` is the defended model's state dict, of {architecture}."
    report.add_section(f"Defense: {args.method}", defense_markdown(args, history, seconds) + "\n\n" + weights)
    phases.end("evaluated")
    if not main:
        return 0
    models = {AFTER: after, **({BEFORE: before} if trained_here else {})}

    def write(folder: Path) -> tuple[Path, list[Path]]:
        html = report.save(folder)
        return html, [save_tensors(weights_of(model).state_dict(), folder / f"{name}.pt")
                      for name, model in models.items()]

    html, saved = save_or_rescue(args.out, write, f"the defended model ({AFTER}.pt) and its report", "defense")
    print(f"weights: {', '.join(str(p) for p in saved)} (state dicts of {architecture})")
    return print_report(report, html)


def weights_of(model: nn.Module) -> nn.Module:
    """The module whose state dict is saved: a library's own model inside :class:`~advkit.models.External`
    (so that ``--arch LIBRARY:NAME --weights after.pt`` loads it again), else ``model``."""
    return model.model if isinstance(model, External) else model


def with_option(name: str) -> list[str]:
    """The adversarial-training methods that take the method option ``name`` (``--awp``, ``--ema``)."""
    return [m for m, spec in TRAINING_METHODS.items() if name in {**COMMON, **spec.options}]


def method_options(args: argparse.Namespace) -> dict[str, float]:
    """``--awp`` and ``--ema`` where given, as ``adversarial_training``'s method options."""
    return {name: getattr(args, name) for name in ("awp", "ema") if getattr(args, name) is not None}


def ema_option(args: argparse.Namespace) -> dict[str, float]:
    """``--ema`` where given, as the ``ema`` keyword of finetune, gaussian_training and augmented_training."""
    return {} if args.ema is None else {"ema": args.ema}


def checkpointed() -> list[str]:
    """The defenses that take ``--checkpoint-dir`` and ``--resume``."""
    return [name for name, defense in DEFENSES.items() if defense.checkpointed]


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, what cannot run: a zero eps for an adversarial defense, checkpoints
    for a method without them, a TorchScript model to train, an unknown attack, an --out folder that
    cannot take the report (:func:`~advkit.app.evaluate_cli.check_report_folder`), a --checkpoint-dir
    that cannot be written, holds another run (without --resume) or nothing to resume (with it)."""
    check_eps(args.eps, "--eps", norm=args.norm)
    if args.eps == 0 and DEFENSES[args.method].adversarial:
        raise UsageError(f"--eps must be > 0 for --method {args.method} (eps 0 is plain training)")
    if (args.checkpoint_dir is not None or args.resume) and not DEFENSES[args.method].checkpointed:
        raise UsageError(f"--checkpoint-dir and --resume work with --method {', '.join(checkpointed())}, "
                         f"not {args.method}")
    smoothing = ["--" + name.replace("_", "-") for name in smoothing_options(args)]
    if smoothing and args.method != "gaussian":
        raise UsageError(f"{' and '.join(smoothing)}: options of --method gaussian, not of --method {args.method}")
    tuning = [flag for flag in smoothing if flag.startswith("--smoothadv-") and flag != "--smoothadv-eps"]
    if tuning and not args.smoothadv_eps:
        raise UsageError(f"{' and '.join(tuning)} tune SmoothAdv, which --smoothadv-eps turns on (an L2 budget > 0)")
    if args.resume and args.checkpoint_dir is None:
        raise UsageError("--resume needs the --checkpoint-dir of the run to continue")
    if args.model is not None and args.model.is_file() and is_torchscript(args.model):
        raise UsageError(f"{args.model} is a TorchScript file, which advkit cannot train: give the model as a "
                         "state dict (torch.save(model.state_dict())) with --arch or --model-factory")
    if args.awp is not None and args.method not in with_option("awp"):
        raise UsageError(f"--awp works with --method {', '.join(with_option('awp'))}, not {args.method}")
    if args.ema is not None:
        check_ema(args.ema, "--ema")
    if method_options(args) and args.method in TRAINING_METHODS:
        TRAINING_METHODS[args.method].resolve(method_options(args))  # their ranges, before any training
    resolve(args.attacks)
    check_report_folder(args.out, "--out")
    if args.checkpoint_dir is not None:
        check_folder(args.checkpoint_dir, "--checkpoint-dir")
        folder = CheckpointFolder(args.checkpoint_dir, CHECKPOINT_PREFIX)
        if args.resume:
            folder.resumable_run()
        else:
            folder.claim(new_run_id())


def defend(model: nn.Module, train: Any, test: Any, args: argparse.Namespace, progress: bool
           ) -> tuple[nn.Module, History]:
    """Run ``args.method`` on ``model`` (trained in place); returns it in eval mode and the method's history."""
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    if args.method == "finetune":
        model, history = finetune(model, train, eps=args.eps, seed=args.seed, progress=progress, norm=args.norm,
                                  device=args.device, eval_data=test, checkpoint_dir=args.checkpoint_dir,
                                  resume=args.resume, **epochs, **ema_option(args))
    elif args.method == "gaussian":
        model, history = gaussian_training(model, train, seed=args.seed, progress=progress, device=args.device,
                                           eval_data=test, **smoothing_options(args), **epochs, **ema_option(args))
    elif args.method == "augment":
        model, history = augmented_training(model, train, seed=args.seed, progress=progress, device=args.device,
                                            **epochs, **ema_option(args))
    else:
        model, history = adversarial_training(model, train, method=args.method, eps=args.eps, norm=args.norm,
                                              eval_data=test, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                                              seed=args.seed, device=args.device, progress=progress, **epochs,
                                              **gpu_options(args), **method_options(args))
    return model.eval(), history


def strength(args: argparse.Namespace) -> str:
    """What the defense trains against: its eps, or for --method gaussian its sigma (and SmoothAdv's eps,
    steps and noise draws)."""
    if args.method != "gaussian":
        return f"at eps {args.eps:g} ({args.norm})"
    options = GaussianOptions(**smoothing_options(args))
    steps, draws = options.smoothadv_steps, options.smoothadv_samples
    adversarial = (f", SmoothAdv at L2 eps {options.smoothadv_eps:g} ({steps} PGD step{'s' * (steps > 1)} on "
                   f"{draws} noise draw{'s' * (draws > 1)})") if options.smoothadv_eps else ""
    return f"at sigma {options.sigma:g}{adversarial}"


def smoothing_options(args: argparse.Namespace) -> dict[str, float]:
    """``--sigma`` and the ``--smoothadv-*`` flags as :func:`~advkit.defenses.gaussian_training`'s keywords
    (those given)."""
    names = ("sigma", "smoothadv_eps", "smoothadv_steps", "smoothadv_samples", "smoothadv_warmup")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def positive_float(text: str) -> float:
    """A finite number > 0 (``--sigma``)."""
    return _float(text, lambda value: math.isfinite(value) and value > 0, "a finite number > 0")


def unit_float(text: str) -> float:
    """A number in [0, 1] (``--smoothadv-warmup``)."""
    return _float(text, lambda value: 0 <= value <= 1, "a number in [0, 1]")


def _float(text: str, ok: Callable[[float], bool], rule: str) -> float:
    """``text`` as a float that passes ``ok`` (text that is no number is NaN: it fails every rule here)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
    return value


def eval_grid(args: argparse.Namespace) -> list[float]:
    """``--eval-eps``, or five points from 0 to the training eps (augment without an eps: 0 to 0.3)."""
    if args.eval_eps is not None:
        return args.eval_eps
    top = args.eps or 0.3
    return [top * k / 4 for k in range(5)]


def defense_markdown(args: argparse.Namespace, history: History, seconds: float) -> str:
    """What the defense ran and its history, one row per epoch."""
    text = (f"`advkit defend --method {args.method}` {strength(args)} on {args.data}, seed "
            f"{args.seed}, starting from the model before: {seconds:.0f} s.")
    guard = {"best_epoch": "the model keeps the weights of epoch {}", "guard_fired": "the guard stopped at epoch {}"}
    text += "".join(f" {what.format(getattr(history, key))}." for key, what in guard.items()
                    if getattr(history, key) is not None)
    rows = history.table()
    if not rows:
        return text
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    return text + "\n\n" + "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)

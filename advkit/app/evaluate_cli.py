"""``advkit evaluate`` (a saved model against a list of attacks) and ``advkit demo`` (the main job)."""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..acceleration import add_gpu_options, gpu_options
from ..core import NORMS
from ..data import IMAGE_NAMES, NAMES, load
from ..data.corruptions import CORRUPTIONS
from ..data.suites import FOLDERS, CorruptionFiles
from ..distributed import is_main
from ..evaluation.evaluate import evaluate
from ..evaluation.folder import report_files
from ..evaluation.specs import DEFAULT_ATTACKS, resolve
from ..evaluation.tables import comparison_tables, to_markdown
from ..models import (
    ARCHS,
    LIBRARIES,
    External,
    build,
    from_factory,
    is_torchscript,
    load_state_dict,
    load_torchscript,
    preprocessing,
)
from ..models import load as load_library
from ..outputs import check_folder, save_or_rescue
from .usage import UsageError

DEMO_HELP = """\
The main job on the embedded MNIST-5k digits (no download), in one report folder:
  1. train a SmallCNN (4,000 training digits; about 97% test accuracy);
  2. defend a copy of it: fast adversarial training (FGSM-RS) at eps 0.2 from its
     weights, 2 epochs (quick: 1);
  3. the robustness curves of both on one plot: accuracy under FGSM and APGD-CE
     (100 steps; quick: 10) versus eps on 500 test digits (quick: 200), with the per-sample
     worst case over both, the defense's change in clean accuracy and robust gain;
  4. sanity checks for gradient masking and a failed or weak attack (more steps, more
     eps, a gradient-free attack, a stronger one, ...) on both models, each passed or
     failed with its reason;
  5. AdvGAN: a generator trained 300 steps (quick: 60) to attack the standard model in
     one forward pass, its accuracy and time per image beside PGD's;
  6. a GAN section, trained on the same min-max engine: quick, an MLP GAN on a ring
     of 8 Gaussians (modes covered); full, a class-conditional digit GAN (sample
     grid, loss curve, class accuracy, spread and FID judged by another classifier).
Times on 2 CPU cores: --quick about 40 s, the full demo about 4 minutes; a GPU adds
AutoAttack to the curves. The report (report.html, report.md, report.json,
curve.png, comparison.png and the images) is written to --out (default ./advkit-demo)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="robust accuracy of a saved model versus eps; writes a report folder",
                       description="Robust accuracy of a model versus eps under a list of attacks, with sanity checks; "
                                   "writes a report folder. The model is a state dict (--model) of a reference "
                                   "architecture (--arch) or of the module a factory builds (--model-factory), "
                                   "a TorchScript file (--model alone), or a model of timm, torchvision, Hugging "
                                   "Face or the RobustBench zoo (--arch LIBRARY:NAME).")
    p.add_argument("--model", "--weights", type=Path, default=None,
                   help="a state dict (torch.save(model.state_dict()); loaded with weights_only=True) or a TorchScript "
                        "archive (torch.jit.save); with --arch robustbench:NAME, RobustBench's model_dir")
    add_arch_options(p)
    p.add_argument("--model-factory", default=None, metavar="MODULE:FUNCTION",
                   help="a function returning the nn.Module to evaluate, e.g. mymodels:resnet (./mymodels.py); "
                        "--model, if given, is loaded into it")
    p.add_argument("--data", default="mnist5k", choices=NAMES,
                   help="dataset; its test split is evaluated (imagenet: the validation folder; folder: any "
                        "class-per-folder tree; both read lazily from --root)")
    p.add_argument("--root", default=None, help="folder of the dataset's files")
    p.add_argument("--resize", type=positive_int, default=None, metavar="SIDE",
                   help="--data imagenet or folder: resize each image's short side to SIDE (imagenet's default 256)")
    p.add_argument("--crop", type=positive_int, default=None, metavar="SIDE",
                   help="--data imagenet or folder: centre-crop each image to SIDE x SIDE (imagenet's default 224)")
    p.add_argument("--subset", default=None, metavar="robustbench|FILE",
                   help="--data imagenet: only RobustBench's 5,000 images (robustbench) or those a list file names")
    p.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS), type=attack_names,
                   help="comma-separated attack names, e.g. fgsm,pgd-40,apgd,apgd-t,square or autoattack "
                        f"(default {','.join(DEFAULT_ATTACKS)})")
    p.add_argument("--eps", default="0,0.1,0.2,0.3", type=eps_grid,
                   help="comma-separated budgets in [0, 1] pixel units, fractions allowed (0,2/255,8/255); "
                        "0 is clean accuracy")
    p.add_argument("--norm", default="linf", choices=tuple(NORMS))
    p.add_argument("--n", type=positive_int, default=None, help="evaluate the first N test samples")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="rows per batch (default: 256 on the CPU; on CUDA the largest that fits)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh-starts", action="store_true",
                   help="start each eps's attack from a random point, not where the previous eps's search ended")
    p.add_argument("--probe", type=non_negative_int, default=100, help="samples for the sanity checks (0: no checks)")
    p.add_argument("--queries", type=positive_int, default=500, help="query budget of the checks' gradient-free attack")
    p.add_argument("--eot", type=positive_int, default=None, metavar="N",
                   help="forwards per gradient of the attacks that average them (fgsm, pgd, mifgsm, apgd; autoattack "
                        "runs as its rand version for N > 1); 1: single draws (default: 20 on a model the checks "
                        "find randomized, else as built)")
    add_corruptions_option(p)
    add_gpu_options(p, "the model")
    p.add_argument("--out", type=Path, default=Path("advkit-report"), help="report folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_evaluate)

    d = sub.add_parser("demo", help="the main job: train a SmallCNN on MNIST-5k, evaluate it, write the report",
                       description=DEMO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", type=Path, default=Path("advkit-demo"), help="report folder (default: ./advkit-demo)")
    d.add_argument("--quick", action="store_true",
                   help="smaller budgets: about 40 s instead of 4 minutes on 2 CPU cores")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default=None)
    d.add_argument("--no-progress", action="store_true", help="no progress bars or phase lines")
    d.set_defaults(func=_demo)


def _evaluate(args: argparse.Namespace) -> int:
    resolve(args.attacks)  # unknown attack names fail here, before any loading
    check_report_folder(args.out, "--out")
    check_model_options(args)
    library = library_model(args)  # before the data, so that images can be sized to it (image_sizes)
    _, test = load(args.data, root=args.root, **image_options(args, library))
    model = cli_model(args, test[0][0], library)
    report = evaluate(model.eval(), test, attacks=args.attacks, eps=args.eps, norm=args.norm, n=args.n,
                      batch_size=args.batch_size, device=args.device, seed=args.seed, progress=not args.no_progress,
                      warm_start=not args.fresh_starts, checks=args.probe > 0, probe=args.probe, queries=args.queries,
                      corruptions=args.corruptions, eot=args.eot, **gpu_options(args))
    path = save_or_rescue(args.out, report.save, "the report", "report")
    return print_report(report, path) if is_main() else 0


def image_options(args: argparse.Namespace, library: nn.Module | None = None) -> dict[str, Any]:
    """The options of :func:`advkit.data.load` for ``--data imagenet`` or ``folder``: the sizes and the
    interpolation of the library model's own preprocessing (:func:`image_sizes`), overridden by
    ``--resize``, ``--crop`` and ``--subset`` where given. Those flags are refused (UsageError) for a data
    set read from tensors, and ``--subset`` for another set than imagenet."""
    given = {k: getattr(args, k) for k in ("resize", "crop", "subset") if getattr(args, k) is not None}
    if given and (args.data not in IMAGE_NAMES or ("subset" in given and args.data != "imagenet")):
        names = ", ".join(f"--{k}" for k in given)
        raise UsageError(f"{names}: options of --data imagenet (and folder, but for --subset), not --data {args.data}")
    if args.data not in IMAGE_NAMES:
        return {}
    sizes = image_sizes(library)
    found = preprocessing(library) if sizes else None  # sized by the model: its interpolation too
    return {**sizes, **({"interpolation": found.interpolation} if found is not None else {}), **given}


def check_report_folder(out: Path, option: str) -> None:
    """Refuse (UsageError), before any work, a report folder the report could not be saved into:
    :func:`advkit.outputs.check_folder`'s cases (a file, a file above it, not writable, the current
    folder or one above it), and an existing folder that holds files but no advkit report."""
    try:
        check_folder(out, option, report=True)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if out.is_dir() and any(out.iterdir()) and report_files(out) is None:
        raise UsageError(f"{option} {out} is a folder that holds no advkit report: choose a new folder, an empty "
                         "one or the folder of an earlier report")


ARCH_HELP = ("the architecture: one of advkit's ({archs}; default smallcnn) whose state dict --model is, or "
             "LIBRARY:NAME: timm:resnet18, torchvision:resnet50 (--weights: a state dict file; --num-classes), "
             "hf:FOLDER (a Hugging Face classifier's save_pretrained folder), robustbench:NAME (--weights: "
             "RobustBench's model_dir holding DATA/THREAT_MODEL/NAME.pt; the data set from --data, --threat-model)")


def add_arch_options(parser: argparse.ArgumentParser) -> None:
    """``--arch`` (advkit's architectures or ``LIBRARY:NAME``), ``--num-classes`` and ``--threat-model``."""
    parser.add_argument("--arch", default=None, type=arch_name, metavar="ARCH",
                        help=ARCH_HELP.format(archs=", ".join(sorted(ARCHS))))
    parser.add_argument("--num-classes", type=positive_int, default=None,
                        help="logits of a timm: or torchvision: architecture (default: the architecture's, 1000)")
    parser.add_argument("--threat-model", default=None, choices=("Linf", "L2", "corruptions"),
                        help="the RobustBench zoo's threat model of a robustbench: entry (default: --norm's)")


def arch_name(text: str) -> str:
    """One of :data:`advkit.models.ARCHS`, or ``LIBRARY:NAME`` with LIBRARY one of :data:`advkit.models.LIBRARIES`."""
    library, colon, name = text.partition(":")
    if text in ARCHS or (colon and library in LIBRARIES and name):
        return text
    raise argparse.ArgumentTypeError(f"choose from {', '.join(sorted(ARCHS))} or LIBRARY:NAME with LIBRARY one "
                                     f"of {', '.join(LIBRARIES)}; got {text!r}")


def library_model(args: argparse.Namespace) -> External | None:
    """The model of another library that ``--arch LIBRARY:NAME`` names (:func:`advkit.models.load`), or
    None for advkit's architectures, a factory or TorchScript. Built before the data: its
    :func:`~advkit.models.preprocessing` sizes the images (:func:`image_sizes`)."""
    library = (args.arch or "").partition(":")[0]
    if library not in LIBRARIES:
        for option in ("num_classes", "threat_model"):
            if getattr(args, option, None) is not None:
                raise UsageError(f"--{option.replace('_', '-')} is an option of --arch LIBRARY:NAME")
        return None
    options = {}
    if library == "robustbench":
        threat = args.threat_model or {"linf": "Linf", "l2": "L2"}.get(args.norm)
        options = {"dataset": args.data, "threat_model": threat}
    elif args.threat_model is not None:
        raise UsageError("--threat-model is an option of --arch robustbench:NAME")
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    try:
        return load_library(args.arch, args.model, **options)
    except ImportError as err:  # a missing extra: its message names it
        raise UsageError(str(err)) from None


def image_sizes(model: nn.Module | None) -> dict[str, int]:
    """``resize`` (the short side) and ``crop`` for the data loaders that resize and crop images
    (:func:`advkit.data.load`'s imagenet and folder), from the model's own
    :class:`~advkit.models.Preprocessing`; empty for a model that carries none. An exact (height,
    width) resize of a square input becomes a short-side resize to that side, then the crop."""
    found = preprocessing(model) if model is not None else None
    if found is None or found.input_size[1] != found.input_size[2]:
        return {}
    resize = found.resize[0] if isinstance(found.resize, tuple) else found.resize
    return {"crop": found.input_size[1], **({"resize": resize} if resize is not None else {})}


def check_model_options(args: argparse.Namespace) -> None:
    """Refuse (UsageError) no model at all, and --arch with --model-factory."""
    library = (args.arch or "").partition(":")[0] in LIBRARIES
    if args.model is None and args.model_factory is None and not library:
        raise UsageError("give the model: --model FILE (a state dict or a TorchScript file) and/or "
                         "--model-factory MODULE:FUNCTION, or --arch LIBRARY:NAME")
    if args.arch is not None and args.model_factory is not None:
        raise UsageError("give --arch or --model-factory, not both: the factory builds the architecture")


def cli_model(args: argparse.Namespace, sample: torch.Tensor, library: nn.Module | None = None) -> nn.Module:
    """The model that ``--model``, ``--arch`` and ``--model-factory`` describe (``library``: the one
    :func:`library_model` built), checked to take ``sample`` (one image of the data set) and return
    one row of logits."""
    check_model_options(args)
    if library is not None:
        model = library
    elif (args.arch or "").partition(":")[0] in LIBRARIES:
        model = library_model(args)
    elif args.model is not None and args.model.is_file() and is_torchscript(args.model):
        if args.arch is not None or args.model_factory is not None:
            raise UsageError(f"{args.model} is a TorchScript file, which carries its own architecture: "
                             "drop --arch/--model-factory")
        model = load_torchscript(args.model)
    else:
        if args.model_factory is not None:
            model = from_factory(args.model_factory)
        else:
            arch = args.arch or "smallcnn"
            sized = {"input_size": sample.shape[-1]} if arch == "smallcnn" else {}
            model = build(arch, in_channels=sample.shape[0], **sized)
        if args.model is not None:
            load_state_dict(model, args.model)
    try:
        with torch.no_grad():
            out = model.eval()(sample.unsqueeze(0))
    except RuntimeError as err:
        raise UsageError(f"the model cannot take --data {args.data}'s images of shape {tuple(sample.shape)}: "
                         f"{str(err).strip().splitlines()[0]}") from err
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"the model must return logits of shape (N, num_classes); for one image it returned {shape}")
    return model


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    check_report_folder(args.out, "--out")
    start = time.perf_counter()
    report = run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device, progress=not args.no_progress)
    print(f"demo finished in {time.perf_counter() - start:.1f} s")
    return print_report(report, args.out / "report.html")


def add_corruptions_option(parser: argparse.ArgumentParser, default: bool | list[str] = False) -> None:
    """``--corruptions [NAMES | SUITE]``: accuracy under corruptions too (alone: all of advkit's own)."""
    parser.add_argument("--corruptions", nargs="?", const=True, default=default, type=corruption_names,
                        metavar="NAMES", help="also accuracy under common corruptions at severities 1 to 5: "
                        f"comma-separated names ({', '.join(CORRUPTIONS)}), or the option alone for all; or a "
                        "standard suite: imagenet-c (its 15 corruptions through the imagecorruptions package, "
                        "pip install 'advkit[corruptions]'), cifar10-c=ROOT or cifar100-c=ROOT (the official .npy "
                        "files under ROOT/CIFAR-10-C or ROOT/CIFAR-100-C, aligned with the test set)")


def corruption_names(text: str) -> list[str] | str | CorruptionFiles:
    """Comma-separated names of :data:`advkit.defenses.CORRUPTIONS`, ``imagenet-c``, or ``cifar10-c=ROOT`` /
    ``cifar100-c=ROOT`` (a :class:`~advkit.data.suites.CorruptionFiles`)."""
    suite, _, root = text.strip().partition("=")
    if suite == "imagenet-c" and not root:
        return suite
    if suite in FOLDERS:
        if not root:
            raise argparse.ArgumentTypeError(f"{suite} reads the official files: give their root, {suite}=ROOT")
        try:
            return CorruptionFiles(suite, root)
        except (FileNotFoundError, ValueError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in CORRUPTIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown corruption {unknown[0] if unknown else text!r}; "
                                         f"choose from {', '.join(CORRUPTIONS)}, or a suite: imagenet-c, "
                                         "cifar10-c=ROOT, cifar100-c=ROOT")
    return names


def print_report(report, path: Path) -> int:
    """Print the accuracy table, the before/after summary of each comparison, the checks and the
    report's path; exit status 0."""
    print(report.table())
    for comparison in report.comparisons.values():
        print("\n" + to_markdown(comparison_tables(comparison)[0]) + "\n")
    for check in report.checks:
        print(f"[{check.status}] {check.model} {check.name}: {check.message}")
    print(f"report: {path.resolve()}")
    return 0


def attack_names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one attack name")
    return names


def eps_grid(text: str) -> list[float]:
    """Comma-separated finite non-negative numbers; each may be a fraction ``a/b`` (``8/255``)."""
    values = [eps_number(t.strip()) for t in text.split(",") if t.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one eps")
    return values


def eps_number(text: str) -> float:
    try:
        parts = [float(p) for p in text.split("/")]
        value = parts[0] / parts[1] if len(parts) == 2 else (parts[0] if len(parts) == 1 else math.nan)
    except (ValueError, ZeroDivisionError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"eps must be finite non-negative numbers or fractions a/b "
                                         f"(0.1, 8/255), got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    return _integer(text, 0)


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
    return value

"""Which default attacks judge a defended model like AutoAttack (issue 23): the worst case over each
candidate set at the model's eps, beside the official AutoAttack, with the passes and seconds each
set costs, on three kinds of mnist5k SmallCNNs (trained once, cached in --cache):

- ``standard``: plain training (8 epochs, the demo's), judged at eps 0.1;
- ``fgsm-rs``: the demo's defense of it (FGSM-RS at eps 0.2, 2 epochs), at 0.2;
- ``defend-fgsm-rs``: ``advkit defend --method fgsm-rs --eps 0.2 --epochs 2``'s (its wide SmallCNN), at 0.2;
- ``pgd``: ``adversarial_training(method="pgd")`` at its defaults from the standard model, at 0.3.

    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        python benchmarks/judges.py --n 300 --seeds 0 1 2

Every set's attacks run on the same first --n test images at one eps, each attack on every image
(as ``evaluate`` runs each attack of its list on every sample still standing); a sample counts as
robust when it is classified correctly and no attack of the set fooled it. Passes: the attacks' own
per-image backward passes (a forward without backward is not counted; they are under 5% here).
Seeded sets run once per seed (the table shows min-max over seeds); the official AutoAttack runs
once, seed 0 (its ``pyautoattack`` package, as ``benchmarks/autoattack.py`` calls it).

``--checks`` instead runs ``evaluate`` with today's defaults (fgsm, pgd-40) and the new ones on the grid
0, eps/4, eps/2, 3eps/4, eps, once per seed, and prints the stronger-attack check's verdict, its passes
and all the checks' as a share of the curves' passes:

    OMP_NUM_THREADS=1 python benchmarks/judges.py --checks --n 200 --kinds defend-fgsm-rs pgd standard
"""
from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import advkit
from advkit.attacks import APGD, APGDT, FGSM, PGD
from advkit.defenses import adversarial_training
from advkit.defenses.training import defense_model
from advkit.evaluation.specs import DEFAULT_ATTACKS
from advkit.models import SmallCNN
from advkit.train import fit

#: Model kind -> the eps it is judged at.
KINDS = {"standard": 0.1, "fgsm-rs": 0.2, "defend-fgsm-rs": 0.2, "pgd": 0.3}
#: Model kind -> (the model it starts from, adversarial_training's method and options); None: plain training.
RECIPES = {"standard": None, "fgsm-rs": ("standard", "fgsm-rs", {"eps": 0.2, "epochs": 2}),
           "standard-wide": None, "defend-fgsm-rs": ("standard-wide", "fgsm-rs", {"eps": 0.2, "epochs": 2}),
           "pgd": ("standard", "pgd", {"eps": 0.3})}
Factory = Callable[[torch.nn.Module, float, int], Any]


def trained(kind: str, cache: Path) -> torch.nn.Module:
    """The ``kind`` model, loaded from ``cache`` when it holds it, else trained (seed 0) and saved there:
    8 epochs of plain training, then (``RECIPES``) adversarial training from a copy of the model named
    there. ``defend-fgsm-rs`` and its ``standard-wide`` are ``advkit defend --method fgsm-rs --eps 0.2
    --epochs 2``'s (its wide SmallCNN); the others are SmallCNNs, ``fgsm-rs`` the demo's defended model."""
    path = cache / f"judges_{kind}.pt"
    recipe = RECIPES[kind]
    wide = kind in ("standard-wide", "defend-fgsm-rs")
    model = defense_model() if wide else SmallCNN()
    if path.exists():
        advkit.models.load_state_dict(model, path)
        return model.eval()
    train = advkit.data.load("mnist5k", seed=0)[0]
    start = time.perf_counter()
    if recipe is None:
        torch.manual_seed(0)
        fit(model, train, epochs=8, seed=0, progress=False)
    else:
        base, method, options = recipe
        model = copy.deepcopy(trained(base, cache))
        adversarial_training(model, train, method=method, seed=0, progress=False, **options)
    print(f"trained {kind} in {time.perf_counter() - start:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model.eval()


def candidates() -> dict[str, list[tuple[str, Factory]]]:
    """The attack sets compared: today's defaults, the chosen ones (DEFAULT_ATTACKS) and others."""
    fgsm = ("fgsm", lambda m, e, s: FGSM(m, eps=e))
    apgd = ("apgd", lambda m, e, s: APGD(m, eps=e, seed=s))

    def apgd_t(steps: int, targets: int) -> tuple[str, Factory]:
        return (f"apgd-t-{steps}x{targets}", lambda m, e, s: APGDT(m, eps=e, steps=steps, n_target_classes=targets,
                                                                     seed=s))
    return {
        "fgsm, pgd-40 (old)": [fgsm, ("pgd-40", lambda m, e, s: PGD(m, eps=e, steps=40, seed=s))],
        "fgsm, apgd-50": [fgsm, ("apgd-50", lambda m, e, s: APGD(m, eps=e, steps=50, seed=s))],
        "fgsm, apgd": [fgsm, apgd],
        "fgsm, apgd-50, apgd-t-50x1": [fgsm, ("apgd-50", lambda m, e, s: APGD(m, eps=e, steps=50, seed=s)),
                                        apgd_t(50, 1)],
        "apgd, apgd-t-100x3": [apgd, apgd_t(100, 3)],
    }


def judge(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
          attacks: list[tuple[str, Factory]], seed: int) -> tuple[int, int, float, dict[str, int]]:
    """Robust samples under the set, its backward passes and seconds, and each attack's robust count."""
    with torch.no_grad():
        robust = model(x).argmax(1) == y
    passes, seconds, alone = 0, 0.0, {}
    for name, build in attacks:
        start = time.perf_counter()
        res = build(model, eps, seed).run(x, y)
        seconds += time.perf_counter() - start
        passes += res.backwards
        alone[name] = int((robust & ~res.success).sum())
        robust = robust & ~res.success
    return int(robust.sum()), passes, seconds, alone


def official(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[int, float]:
    """Robust samples under the official standard AutoAttack (L-inf, seed 0) and its seconds."""
    from pyautoattack import AutoAttack as OfficialAutoAttack

    start = time.perf_counter()
    atk = OfficialAutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0, device=x.device)
    x_adv, _ = atk.run_standard_evaluation(x, y, batch_size=500)
    seconds = time.perf_counter() - start
    assert float((x_adv - x).abs().amax()) <= eps + 1e-6
    with torch.no_grad():
        return int((model(x_adv).argmax(1) == y).sum()), seconds


def checks(model: torch.nn.Module, data: Any, eps: float, n: int, seed: int) -> None:
    """The stronger-attack check's verdict on the old and the new default curves, with its cost."""
    for label, attacks in (("fgsm, pgd-40 (old)", ["fgsm", "pgd-40"]), ("new defaults", list(DEFAULT_ATTACKS))):
        res = advkit.evaluate(model, data, attacks=attacks, eps=[0, eps / 4, eps / 2, 3 * eps / 4, eps], n=n,
                              seed=seed, progress=False, device="cpu", examples=0)["model"]
        curve = res.curve_passes()
        share = {c.name: (c.cost.forwards + c.cost.backwards) / curve for c in res.checks}
        check = next(c for c in res.checks if c.name == "stronger-attack")
        worst = 100 * res.accuracy("worst")[-1]
        print(f"| {seed} | {label} | {worst:.1f}% | {check.status} | {check.details['extra']} "
              f"of {check.details['standing']} standing (of {check.details['samples']}), allowed "
              f"{check.details['allowed']} | {100 * share[check.name]:.1f}% | {100 * sum(share.values()):.1f}% |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="mnist5k test images")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the attacks' draws")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--sets", nargs="*", default=None, help="only these candidate sets (default: all)")
    parser.add_argument("--no-official", action="store_true", help="skip the official AutoAttack")
    parser.add_argument("--checks", action="store_true", help="the stronger-attack check on old and new defaults")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "advkit_judges")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    sets = candidates()
    sets = {k: v for k, v in sets.items() if args.sets is None or k in args.sets}
    print(f"default attacks now: {', '.join(DEFAULT_ATTACKS)}")
    x, y = (t[:args.n] for t in advkit.data.load("mnist5k")[1].tensors)
    for kind in args.kinds:
        model, eps = trained(kind, args.cache), KINDS[kind]
        if args.checks:
            print(f"\n{kind}: L-inf eps {eps:g}, {args.n} test images\n| seed | attacks | worst case at eps | "
                  "stronger-attack | fooled | its passes / curve's | all checks' |\n|---|---|---|---|---|---|---|")
            for seed in args.seeds:
                checks(model, advkit.data.load("mnist5k")[1], eps, args.n, seed)
            continue
        with torch.no_grad():
            clean = int((model(x).argmax(1) == y).sum())
        print(f"\n{kind}: L-inf eps {eps:g}, {args.n} test images, clean {100 * clean / args.n:.1f}%", flush=True)
        print("| attack set | worst case (min-max over seeds) | passes per image | seconds | robust after each |")
        print("|---|---|---|---|---|")
        for label, attacks in sets.items():
            runs = [judge(model, x, y, eps, attacks, seed) for seed in args.seeds]
            accs = sorted(100 * r[0] / args.n for r in runs)
            passes = sum(r[1] for r in runs) / len(runs) / args.n
            secs = sum(r[2] for r in runs) / len(runs)
            each = ", ".join(f"{name} {100 * v / args.n:.1f}" for name, v in runs[0][3].items())
            print(f"| {label} | {accs[0]:.1f}-{accs[-1]:.1f}% | {passes:.0f} | {secs:.1f} | {each} |", flush=True)
        if not args.no_official:
            robust, secs = official(model, x, y, eps)
            print(f"| AutoAttack (official, standard) | {100 * robust / args.n:.1f}% | - | {secs:.1f} | |", flush=True)


if __name__ == "__main__":
    main()

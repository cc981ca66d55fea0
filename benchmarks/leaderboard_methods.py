"""MART, AWP and the EMA of the weights against plain PGD-AT (issue 22, item 3) on mnist5k at L-inf eps 0.3,
each at its defaults on ``defense_model()``.

Every run records, after each epoch, PGD-40 accuracy on the first ``--curve-n`` test images of the raw
weights and of each average of the weights it keeps (the run's own ``ema`` option, and ``--extra-ema``
decays averaged beside it by this script, so that one run measures plain PGD-AT and its EMAs together);
the drop is the best epoch's PGD-40 accuracy minus the last epoch's. At the end the final weights (raw,
and each average) are saved in ``--out`` and measured: clean accuracy on all 1,000 test images, PGD-40 and
AutoAttack (``--autoattack official``: pyautoattack's standard version, the figure to report; ``advkit``:
ours, a stand-in for screening) on the first ``--n``.

    # the issue's scale: 40 epochs, 3 seeds, the official AutoAttack on 300 images
    OMP_NUM_THREADS=1 python benchmarks/leaderboard_methods.py --runs pgd:ema=0.995 pgd:awp=0.005 \\
        mart trades trades:awp=0.005 --extra-ema 0.999 --epochs 40 --seeds 0 1 2 --n 300 --curve-n 300 \\
        --autoattack official --out results/leaderboard

``--reattack FOLDER`` measures the weights saved there again (other ``--n`` or ``--autoattack``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from defenses import EPS, official, robust  # benchmarks/defenses.py: the same budget and measures

import advkit
from advkit.attacks import PGD, AutoAttack
from advkit.defenses.ema import WeightAverage
from advkit.defenses.training import TrainingGame, adversarial_training, defense_model


def pgd40(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return robust(PGD(model, EPS, steps=40, seed=0), x, y)


def spec(text: str) -> tuple[str, dict]:
    """``METHOD[:NAME=VALUE,...]`` as the method and its options."""
    method, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        name, _, value = item.partition("=")
        options[name] = float(value) if "." in value or "e" in value else int(value)
    return method, options


def weights_path(out: Path, text: str, seed: int, epochs: int) -> Path:
    """Where the run ``text`` of ``seed`` and ``epochs`` saves its final weights."""
    return out / f"{text.replace(':', '_').replace(',', '_')}-s{seed}-e{epochs}.pt"


def train(text: str, seed: int, epochs: int, extra: list[float], curve_n: int, out: Path) -> dict:
    """One run of ``text``, its per-epoch PGD-40 curves, its final weights saved at :func:`weights_path`."""
    method, options = spec(text)
    train_set, test = advkit.data.load("mnist5k")
    x, y = (t[:curve_n] for t in test.tensors)
    curves: dict[str, list[float]] = {}
    extras: list[WeightAverage] = []
    final: dict[str, dict] = {}
    end_epoch, outer_step = TrainingGame.end_epoch, TrainingGame.outer_step

    def record(game: TrainingGame) -> None:
        models = {"raw": game.model, **({f"ema{game.opts['ema']}": game.ema.model} if game.ema else {}),
                  **{f"ema{avg.decay}": avg.model for avg in extras}}
        for name, model in models.items():
            curves.setdefault(name, []).append(pgd40(model.eval(), x, y))
            final[name] = {k: v.clone() for k, v in model.state_dict().items()}
        print(f"  epoch {len(curves['raw'])}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in curves.items()),
              flush=True)

    def hooked_end_epoch(game: TrainingGame) -> None:
        end_epoch(game)
        record(game)

    def hooked_outer_step(game: TrainingGame, r: int, loss: torch.Tensor) -> None:
        outer_step(game, r, loss)
        if not extras:
            extras.extend(WeightAverage(game.model, d) for d in extra)  # from the first step's weights on
        for avg in extras:
            avg.update(game.model, r)

    TrainingGame.end_epoch, TrainingGame.outer_step = hooked_end_epoch, hooked_outer_step
    torch.manual_seed(seed)
    model = defense_model()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        _, history = adversarial_training(model, train_set, method=method, eps=EPS, epochs=epochs, seed=seed,
                                          device="cpu", progress=False, eval_size=1, **options)
    finally:
        TrainingGame.end_epoch, TrainingGame.outer_step = end_epoch, outer_step
    path = weights_path(out, text, seed, epochs)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(final, path)
    row = {"run": text, "seed": seed, "epochs": epochs, "wall": time.perf_counter() - wall,
           "cpu": time.process_time() - cpu, "curve_n": curve_n, "curves": curves,
           "drop": {k: max(v) - v[-1] for k, v in curves.items()},
           "best_epoch": {k: 1 + max(range(len(v)), key=v.__getitem__) for k, v in curves.items()}}
    path.with_suffix(".json").write_text(json.dumps(row, indent=1))
    return row


def measure(path: Path, n: int, autoattack: str, names: list[str] | None = None) -> list[dict]:
    """Clean, PGD-40 and AutoAttack accuracy of each set of final weights saved in ``path`` (those in
    ``names``: ``raw``, ``ema0.995``...; None: all)."""
    _, test = advkit.data.load("mnist5k")
    x, y = (t[:n] for t in test.tensors)
    rows = []
    for name, state in torch.load(path, weights_only=True).items():
        if names is not None and name not in names:
            continue
        model = defense_model()
        model.load_state_dict(state)
        model.eval()
        started = time.process_time()
        row = {"weights": f"{path.stem}/{name}", "clean": advkit.train.accuracy(model, test, device="cpu"),
               "pgd40": pgd40(model, x, y), "n": n}
        if autoattack == "official":
            row["official_aa"] = official(model, x, y)
        elif autoattack == "advkit":
            row["advkit_aa"] = robust(AutoAttack(model, EPS), x, y)
        row["cpu"] = time.process_time() - started
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["pgd:ema=0.995", "pgd:awp=0.005", "mart"],
                   help="METHOD[:OPTION=VALUE,...] each")
    p.add_argument("--extra-ema", nargs="*", type=float, default=[0.999],
                   help="decays of further averages kept beside each run (curves and final weights)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--curve-n", type=int, default=300, help="test images of the per-epoch PGD-40")
    p.add_argument("--n", type=int, default=300, help="test images of the final PGD-40 and AutoAttack")
    p.add_argument("--autoattack", choices=("official", "advkit", "none"), default="official")
    p.add_argument("--out", type=Path, default=Path("results/leaderboard"))
    p.add_argument("--reattack", type=Path, nargs="*", default=None, help="measure these saved weights only")
    p.add_argument("--names", nargs="*", default=None, help="with --reattack: only these weights (raw, ema0.995...)")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.reattack is not None:
        for path in args.reattack:
            measure(path, args.n, args.autoattack, args.names)
        return
    for seed in args.seeds:
        for text in args.runs:
            row = train(text, seed, args.epochs, args.extra_ema, args.curve_n, args.out)
            print(json.dumps({k: v for k, v in row.items() if k != "curves"}), flush=True)
            if args.autoattack != "none":
                measure(weights_path(args.out, text, seed, args.epochs), args.n, args.autoattack)


if __name__ == "__main__":
    main()

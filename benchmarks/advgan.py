"""AdvGAN on mnist5k at L-inf eps 0.3: train the generator on the 4,000 training images, attack the
1,000 test images it never saw; strength and crafting time beside PGD-40, on a standard SmallCNN and on
an adversarially trained one.

    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        python benchmarks/advgan.py --cache /tmp/advkit-bench

Models (cached in --cache): the standard SmallCNN is ``advkit.train.fit`` at its defaults (seed 0); the
robust one is ``advkit.defenses.adversarial_training(defense_model(), train, method=--robust)`` (default
"fgsm-rs", about 4 minutes; "pgd" takes about 12). One AdvGAN is trained against each model at its
defaults for --steps generator steps (wall and CPU seconds and the step count are printed: the machine
is shared, so CPU seconds and steps are the comparable figures). Targets (issue 12): against the
standard model, training <= 10 minutes, accuracy under AdvGAN <= 10%, crafting >= 20x faster per image
than PGD-40.

Crafting time per image is the median of --reps interleaved repetitions on the first --timing test
images, one batch each: AdvGAN's ``atk(x, y)`` (one clean forward of the classifier, as every attack
makes, and one of the generator), PGD-40 at a fixed 40 steps (``early_stop=False``: the cost PGD-40
has in the paper and in torchattacks) and advkit's default PGD-40, which stops each sample once it is
fooled (a few steps on a standard model). FGSM's accuracy is the one-step gradient reference.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import advkit
from advkit.attacks import FGSM, PGD, AdvGAN
from advkit.defenses import adversarial_training
from advkit.defenses.training import defense_model
from advkit.files import save_tensors

EPS = 0.3


def cached(path: Path, build) -> torch.nn.Module:
    """The model saved at ``path``, or ``build()`` saved there."""
    if path.exists():
        model = build(train=False)
        advkit.models.load_state_dict(model, path)
        return model.eval()
    print(f"training {path.stem} (cached at {path}) ...", flush=True)
    model = build(train=True)
    save_tensors(model.state_dict(), path)
    return model.eval()


def standard(train_data):
    def build(train: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        model = advkit.models.SmallCNN()
        if train:
            advkit.train.fit(model, train_data, seed=0, device="cpu", progress=False)
        return model
    return build


def robust(train_data, method: str):
    def build(train: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        model = defense_model()
        if train:
            model, _ = adversarial_training(model, train_data, method=method, seed=0, device="cpu", progress=False)
        return model
    return build


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def train_advgan(model, train_data, steps: int, batch_size: int) -> tuple[AdvGAN, dict]:
    atk = AdvGAN(model, eps=EPS)
    wall, cpu = time.perf_counter(), time.process_time()
    history = atk.fit(train_data, steps=steps, batch_size=batch_size, progress=False)
    cost = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "steps": atk.trained_steps,
            "fooled_last_50": statistics.mean(history["fooled"][-50:])}
    return atk, cost


def craft_times(attacks: dict, x: torch.Tensor, y: torch.Tensor, reps: int) -> dict[str, float]:
    """Median seconds per image of each attack's ``atk(x, y)``, repetitions interleaved."""
    times: dict[str, list[float]] = {name: [] for name in attacks}
    for _ in range(reps):
        for name, atk in attacks.items():
            t0 = time.perf_counter()
            atk(x, y)
            times[name].append((time.perf_counter() - t0) / len(x))
    return {name: statistics.median(t) for name, t in times.items()}


def report(name: str, model, train_data, test_x, test_y, args) -> None:
    atk, cost = train_advgan(model, train_data, args.steps, args.batch_size)
    pgd = PGD(model, eps=EPS, steps=40)
    pgd_fixed = PGD(model, eps=EPS, steps=40, early_stop=False)
    adv = 1 - atk.run(test_x, test_y).success.float().mean().item()
    strong = 1 - pgd.run(test_x, test_y).success.float().mean().item()
    one_step = 1 - FGSM(model, eps=EPS).run(test_x, test_y).success.float().mean().item()
    n = args.timing
    t = craft_times({"advgan": atk, "pgd40": pgd_fixed, "pgd40-es": pgd}, test_x[:n], test_y[:n], args.reps)
    print(f"\n## {name} model (clean accuracy {accuracy(model, test_x, test_y):.1%} on {len(test_x)} test images)")
    print(f"AdvGAN training: {cost['steps']} steps of batch {args.batch_size}, {cost['wall_s']:.0f} s wall, "
          f"{cost['cpu_s']:.0f} s CPU; fooled on the last 50 training batches: {cost['fooled_last_50']:.1%}")
    print(f"accuracy under AdvGAN {adv:.1%}   under PGD-40 {strong:.1%}   under FGSM {one_step:.1%}   "
          f"(L-inf eps {EPS})")
    print(f"crafting, ms per image (median of {args.reps}, {n} images): AdvGAN {1e3 * t['advgan']:.3f}   "
          f"PGD-40 {1e3 * t['pgd40']:.2f} ({t['pgd40'] / t['advgan']:.0f}x)   "
          f"PGD-40 early stop {1e3 * t['pgd40-es']:.2f} ({t['pgd40-es'] / t['advgan']:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "advkit-bench",
                        help="folder keeping the trained classifiers between runs")
    parser.add_argument("--robust", choices=["fgsm-rs", "pgd"], default="fgsm-rs",
                        help="the adversarial training method of the robust model")
    parser.add_argument("--steps", type=int, default=500, help="AdvGAN generator steps")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--timing", type=int, default=200, help="test images in the crafting-time batches")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    train_data, test = advkit.data.load("mnist5k")
    test_x, test_y = test.tensors
    models = {"standard": cached(args.cache / "standard-0.pt", standard(train_data)),
              f"{args.robust} adversarially trained": cached(args.cache / f"{args.robust}-0.pt",
                                                              robust(train_data, args.robust))}
    print(f"# AdvGAN on mnist5k, L-inf eps {EPS}, {args.threads} thread(s), torch {torch.__version__}")
    for name, model in models.items():
        report(name, model, train_data, test_x, test_y, args)


if __name__ == "__main__":
    main()

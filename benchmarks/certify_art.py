"""Randomized smoothing's CERTIFY, advkit vs ART (adversarial-robustness-toolbox), on the same model and images.

Run (ART is in the dev extra; its certify needs statsmodels):

    OMP_NUM_THREADS=1 python benchmarks/certify_art.py --n 100 --n0 100 --draws 1000 --sigma 0.25 --seeds 0 1 2

A SmallCNN trained on mnist5k with Gaussian noise augmentation at ``sigma`` (benchmarks/attacks.py's
recipe, 8 epochs, each batch plus sigma * N(0, I), cached), the first ``n`` mnist5k test images. Both
certify with the same sigma, n0 selection draws, ``draws`` estimation draws and alpha: advkit's
``certify`` (batched across images, seeded ``torch.Generator``), ART's ``PyTorchRandomizedSmoothing.certify``
(image by image, numpy's global RNG seeded from ``seed``; statsmodels' Clopper-Pearson bound). Printed
per seed: the certified accuracy at each radius, the abstentions, the mean certified radius of the
correct ones, the seconds; then, per seed and radius, ours minus ART's certified accuracy against
McNemar's 95% noise band on the same images, 1.96 * sqrt(discordant) / n (the images certified by
one and not the other; two runs of one procedure differ by as much).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from attacks import load_model

import advkit


def gaussian(sigma: float):
    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)

    return augment


def ours(model, x, args, seed):
    t0 = time.perf_counter()
    cert = advkit.defenses.certify(model, x, sigma=args.sigma, n0=args.n0, n=args.draws, alpha=args.alpha,
                                   batch_size=args.batch_size, seed=seed, device="cpu", progress=False)
    return cert.prediction.numpy(), cert.radius.numpy(), time.perf_counter() - t0


def art(model, x, args, seed):
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    smoothed = PyTorchRandomizedSmoothing(model, torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                          nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu",
                                          sample_size=args.n0, scale=args.sigma, alpha=args.alpha)
    np.random.seed(seed)
    t0 = time.perf_counter()
    prediction, radius = smoothed.certify(x.numpy(), n=args.draws, batch_size=args.batch_size)
    return prediction, radius, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--radii", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Path(tempfile.gettempdir()) / f"advkit-bench-smallcnn-gauss{args.sigma:g}.pt"
    model = load_model(cache, torch.device("cpu"), augment=gaussian(args.sigma))
    _, test = advkit.data.load("mnist5k")
    x, y = test[:][0][: args.n], test[:][1][: args.n]
    y = y.numpy()
    print(f"sigma {args.sigma}, n0 {args.n0}, n {args.draws}, alpha {args.alpha}, {args.n} mnist5k test images; "
          f"clean accuracy of the base model {float((model(x).argmax(1).numpy() == y).mean()):.1%}")
    head = " | ".join(f"r={r:g}" for r in args.radii)
    print(f"| seed | code | {head} | abstain | mean radius (correct) | seconds |")
    print("|---|---|" + "---|" * len(args.radii) + "---|---|---|")
    bands = []
    for seed in args.seeds:
        found = {}
        for name, run in (("advkit", ours), ("ART", art)):
            prediction, radius, seconds = run(model, x, args, seed)
            right = prediction == y
            certified = np.stack([right & (radius >= r) for r in args.radii], 1)
            found[name] = certified
            accs = " | ".join(f"{a:.1%}" for a in certified.mean(0))
            print(f"| {seed} | {name} | {accs} | {int((prediction == -1).sum())} | "
                  f"{radius[right].mean() if right.any() else 0:.3f} | {seconds:.1f} |", flush=True)
        a, b = found["advkit"], found["ART"]
        for j, r in enumerate(args.radii):
            discordant = int((a[:, j] != b[:, j]).sum())
            bands.append((seed, r, (a[:, j].mean() - b[:, j].mean()), 1.96 * math.sqrt(discordant) / args.n))
    print("\n| seed | radius | advkit - ART | McNemar 95% band | within |")
    print("|---|---|---|---|---|")
    for seed, r, diff, band in bands:
        print(f"| {seed} | {r:g} | {diff:+.1%} | ±{band:.1%} | {'yes' if abs(diff) <= max(band, 1e-12) else 'NO'} |")


if __name__ == "__main__":
    main()

"""Training for randomized smoothing: certified accuracy of a SmallCNN trained with Gaussian augmentation
against the same SmallCNN trained plainly (issue 22 item 2).

Run:

    python benchmarks/smoothing.py                                   # the reduced CPU scale of benchmarks/README.md
    python benchmarks/smoothing.py --images 500 --n 10000 --seeds 0 1 2 --device cuda   # the issue's scale
    python benchmarks/smoothing.py --smoothadv-eps 0.5               # adds a SmoothAdv model per sigma

Per seed: one SmallCNN trained on mnist5k train with ``advkit.train.fit``'s defaults (plain), and per sigma
(0.25, 0.5) one trained with ``advkit.defenses.gaussian_training`` at that sigma (its defaults: fit's, plus
the noise), both from the same initial weights; then ``advkit.defenses.certify`` (Cohen et al.'s CERTIFY:
n0 = 100 selection draws, ``--n`` estimation draws, alpha = 0.001) of every model at every sigma on the
first ``--images`` test images. Prints, per sigma, the certified accuracy at each L2 radius of every model
(mean over the seeds, and each seed's), the abstentions, and the clean accuracy of the base models. The
target: at every radius, the Gaussian-trained model's certified accuracy far above the plain one's.
The largest radius a certificate can give is sigma * Phi^-1(alpha ** (1 / n)): 2.46 sigma at n = 1,000,
3.2 sigma at n = 10,000; radii beyond it are 0 for every model.
"""
from __future__ import annotations

import argparse
import time

import torch

import advkit
from advkit.defenses import certify, gaussian_training
from advkit.models import SmallCNN

RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def initial(seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--images", type=int, default=100, help="test images certified (the issue: 500)")
    parser.add_argument("--n", type=int, default=1000, help="CERTIFY's estimation draws (the issue: 10,000)")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--smoothadv-eps", type=float, default=0.0, help="also train SmoothAdv at this L2 eps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = advkit.data.load("mnist5k")
    x, y = test.tensors[0][:args.images], test.tensors[1][:args.images]
    curves: dict[tuple[float, str], list[list[float]]] = {}
    for seed in args.seeds:
        started = time.process_time()
        plain = initial(seed)
        advkit.train.fit(plain, train, seed=seed, device=args.device, progress=False)
        print(f"seed {seed}: plain training {time.process_time() - started:.0f} CPU-s, "
              f"clean accuracy {advkit.train.accuracy(plain, test):.3f}", flush=True)
        for sigma in args.sigmas:
            models = {"plain": plain}
            kinds = [("gaussian", 0.0)] + ([("smoothadv", args.smoothadv_eps)] if args.smoothadv_eps else [])
            for kind, eps in kinds:
                started = time.process_time()
                models[kind], _ = gaussian_training(initial(seed), train, sigma=sigma, seed=seed, smoothadv_eps=eps,
                                                    device=args.device, progress=False)
                print(f"seed {seed}: {kind} training at sigma {sigma:g} {time.process_time() - started:.0f} CPU-s, "
                      f"clean accuracy {advkit.train.accuracy(models[kind], test):.3f}", flush=True)
            for name, model in models.items():
                started = time.process_time()
                cert = certify(model, x, sigma=sigma, n0=args.n0, n=args.n, alpha=args.alpha, seed=seed,
                               device=args.device, progress=False)
                row = [acc for _, acc in cert.curve(y, RADII)]
                curves.setdefault((sigma, name), []).append(row)
                abstain = float((cert.prediction == advkit.defenses.ABSTAIN).float().mean())
                print(f"seed {seed}: sigma {sigma:g} {name:9s} certified " + " ".join(f"{a:.2f}" for a in row) +
                      f"  abstained {abstain:.2f}  ({time.process_time() - started:.0f} CPU-s)", flush=True)
    seeds = ", ".join(map(str, args.seeds))
    print(f"\nCertified accuracy (mean over seeds {seeds}; {args.images} mnist5k test images, "
          f"n0 = {args.n0}, n = {args.n}, alpha = {args.alpha:g})\n")
    print("| sigma | training | " + " | ".join(f"r = {r:g}" for r in RADII) + " |")
    print("|---|---|" + "---|" * len(RADII))
    for (sigma, name), rows in curves.items():
        mean = torch.tensor(rows).mean(0).tolist()
        spread = "" if len(rows) == 1 else " (" + "; ".join(" ".join(f"{a:.2f}" for a in row) for row in rows) + ")"
        print(f"| {sigma:g} | {name} | " + " | ".join(f"{a:.1%}" for a in mean) + f" |{spread}")


if __name__ == "__main__":
    main()

"""Augmented training against plain training, judged on corruptions advkit never trains on.

Run:

    python benchmarks/augment.py                 # 12 epochs, seeds 0 1 2, one thread: about 6 minutes
    python benchmarks/augment.py --seeds 0 --epochs 6
    python benchmarks/augment.py --set augmix=False    # augmented_training's keywords (here: without AugMix)

Trains two SmallCNNs on mnist5k train with the same seed and epochs: ``advkit.train.fit`` (plain)
and ``advkit.defenses.augmented_training`` (its defaults), then prints their clean test accuracy,
and their accuracy on the test split under six corruptions written here, independently of
advkit.defenses (different noises, a box blur instead of a Gaussian one, contrast around mid-grey
instead of the image's mean, a linear ramp instead of a fractal haze, salt-and-pepper noise, and a
rotation by nearest-neighbour lookup with darkening), each at two strengths, with their mean; then,
per seed, the gain in that mean, the lowest of the six accuracies and the change in clean accuracy.
The target (issue 21 item 4): a gain of at least 20 points, at least 80% under every one of the six,
and clean accuracy within 1 point. Seconds are CPU seconds of the training (one thread: about its
wall time on an idle machine).
"""
from __future__ import annotations

import argparse
import ast
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor

import advkit
from advkit.defenses import augmented_training


def uniform_noise(x: Tensor, strength: float, g: torch.Generator) -> Tensor:
    """Adds noise drawn uniformly from [-strength, strength] to every pixel."""
    return (x + (torch.rand(x.shape, generator=g) * 2 - 1) * strength).clamp(0, 1)


def box_blur(x: Tensor, size: float, g: torch.Generator) -> Tensor:
    """Replaces every pixel by the mean of the size x size square around it (zero padding)."""
    k = int(size)
    kernel = torch.ones(1, 1, k, k) / k**2
    return F.conv2d(F.pad(x, (k // 2, (k - 1) // 2, k // 2, (k - 1) // 2)), kernel)


def grey_contrast(x: Tensor, factor: float, g: torch.Generator) -> Tensor:
    """Scales every pixel's distance from mid-grey (0.5) by ``factor``."""
    return 0.5 + (x - 0.5) * factor


def ramp_fog(x: Tensor, strength: float, g: torch.Generator) -> Tensor:
    """Overlays a linear brightness ramp in a random direction, from 0 to ``strength``."""
    n, _, h, w = x.shape
    angle = torch.rand(n, generator=g) * 2 * math.pi
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    ramp = angle.cos().view(n, 1, 1) * cols + angle.sin().view(n, 1, 1) * rows
    low, high = ramp.amin((1, 2), keepdim=True), ramp.amax((1, 2), keepdim=True)
    ramp = (ramp - low) / (high - low)
    return (x + strength * ramp.unsqueeze(1)).clamp(0, 1)


def salt_and_pepper(x: Tensor, fraction: float, g: torch.Generator) -> Tensor:
    """Sets a ``fraction`` of the pixels to 0 or 1 (half each)."""
    draw = torch.rand(x.shape, generator=g)
    out = x.clone()
    out[draw < fraction / 2] = 0.0
    out[(draw >= fraction / 2) & (draw < fraction)] = 1.0
    return out


def rotate_darken(x: Tensor, degrees: float, g: torch.Generator) -> Tensor:
    """Rotates each image by ``degrees`` (random sign) about its centre, looking up the nearest source
    pixel (black outside), and darkens it to 60% of its brightness."""
    n, c, h, w = x.shape
    theta = torch.deg2rad(torch.tensor(float(degrees))) * (torch.randint(0, 2, (n,), generator=g) * 2 - 1)
    rows, cols = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    cos, sin = theta.cos().view(n, 1, 1), theta.sin().view(n, 1, 1)
    src_r = (cos * rows + sin * cols + (h - 1) / 2).round().long()
    src_c = (-sin * rows + cos * cols + (w - 1) / 2).round().long()
    inside = (src_r >= 0) & (src_r < h) & (src_c >= 0) & (src_c < w)
    flat = src_r.clamp(0, h - 1) * w + src_c.clamp(0, w - 1)
    out = torch.gather(x.reshape(n, c, h * w), 2, flat.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    return out * inside.unsqueeze(1) * 0.6


#: The held-out corruptions, each at two strengths (a milder and a harsher one).
HELD_OUT = {
    "uniform noise": (uniform_noise, (0.5, 0.8)),
    "box blur": (box_blur, (5, 7)),
    "grey contrast": (grey_contrast, (0.3, 0.15)),
    "ramp fog": (ramp_fog, (0.6, 0.9)),
    "salt and pepper": (salt_and_pepper, (0.1, 0.2)),
    "rotate + darken": (rotate_darken, (20, 35)),
}


def held_out_accuracy(model: torch.nn.Module, x: Tensor, y: Tensor, seed: int) -> dict[str, float]:
    """Accuracy under each held-out corruption (mean over its strengths), the same draws for every model."""
    out = {}
    for k, (name, (corruption, strengths)) in enumerate(HELD_OUT.items()):
        accs = [advkit.train.accuracy(model, (corruption(x, s, torch.Generator().manual_seed(seed * 100 + k)), y))
                for s in strengths]
        out[name] = sum(accs) / len(accs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="keywords of augmented_training, values as Python literals")
    args = parser.parse_args()
    keywords = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(args.threads)
    train, test = advkit.data.load("mnist5k")
    x, y = test.tensors
    names = list(HELD_OUT)
    print(f"SmallCNN on mnist5k ({len(train)} train, {len(x)} test images), {args.epochs} epochs, "
          f"{args.threads} thread(s); held-out accuracy is the mean over two strengths; augmented_training's "
          f"keywords: {keywords or 'its defaults'}\n")
    print(f"{'seed':<6}{'training':<12}{'seconds':>8}{'clean':>8}{'mean':>8}" + "".join(f"{n[:15]:>17}" for n in names))
    summary = []
    for seed in args.seeds:
        row = {}
        for label in ("plain", "augmented"):
            torch.manual_seed(seed)
            model = advkit.models.SmallCNN()
            start = time.process_time()
            if label == "plain":
                advkit.train.fit(model, train, epochs=args.epochs, seed=seed, device="cpu", progress=False)
            else:
                augmented_training(model, train, epochs=args.epochs, seed=seed, device="cpu", progress=False,
                                   **keywords)
            seconds = time.process_time() - start
            accs = held_out_accuracy(model, x, y, seed)
            row[label] = (advkit.train.accuracy(model, test), sum(accs.values()) / len(accs), min(accs.values()))
            print(f"{seed:<6}{label:<12}{seconds:>8.0f}{row[label][0]:>8.1%}{row[label][1]:>8.1%}"
                  + "".join(f"{accs[n]:>17.1%}" for n in names))
        (plain_clean, plain_held_out, _), (clean, held_out, lowest) = row["plain"], row["augmented"]
        summary.append((seed, 100 * (held_out - plain_held_out), 100 * lowest, 100 * (clean - plain_clean)))
    print()
    for seed, gain, lowest, clean in summary:
        print(f"seed {seed}: held-out mean {gain:+.1f} points, lowest {lowest:.1f}%, clean {clean:+.1f} points")
    met = all(gain >= 20 and lowest >= 80 and abs(clean) <= 1 for _, gain, lowest, clean in summary)
    print("target (gain >= 20 points, >= 80% under each, clean within 1 point, every seed): "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()

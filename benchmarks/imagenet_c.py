"""A small model's accuracy under the 15 ImageNet-C corruptions (through the imagecorruptions package), on
CIFAR-10-size images, with ``advkit.evaluate(..., corruptions="imagenet-c")``.

Run (needs ``pip install 'advkit[corruptions]'``):

    python benchmarks/imagenet_c.py                 # 300 test images, prints the table and the time per corruption
    python benchmarks/imagenet_c.py --cifar10 ROOT  # on CIFAR-10's test images instead, when they are on disk

CIFAR-10 is not on the machine these figures come from and nothing can be downloaded, so by default the
images are a STAND-IN: 32x32 crops (random side 48-96 px, resized) of six colour photographs that
scikit-image ships (astronaut, coffee, chelsea, rocket, hubble_deep_field, immunohistochemistry; a
dependency of imagecorruptions), the class being the photograph. Training crops come from the left 70% of
each photograph, test crops from the right 30%. A SmallCNN (``advkit.models.SmallCNN``, 3 channels, 32 px)
is trained with ``advkit.train.fit``; with ``--cifar10`` it is trained on CIFAR-10's training set instead.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import advkit
from advkit.evaluation.tables import corruption_tables, to_markdown

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def crops(n: int, train: bool, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 32x32 crops of the photographs (train: from their left 70%, test: their right 30%), and labels."""
    import skimage.data

    photos = [torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float() / 255 for name in PHOTOS]
    xs, ys = [], []
    for i in range(n):
        label = i % len(photos)
        photo = photos[label]
        h, w = photo.shape[1:]
        split = int(0.7 * w)
        side = int(rng.integers(48, 97))
        left = int(rng.integers(0, split - side)) if train else int(rng.integers(split, w - side))
        top = int(rng.integers(0, h - side))
        patch = photo[:, top:top + side, left:left + side][None]
        xs.append(F.interpolate(patch, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)[0])
        ys.append(label)
    return torch.stack(xs).clamp(0, 1), torch.tensor(ys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="test images")
    parser.add_argument("--train", type=int, default=3000, help="training crops of the stand-in")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cifar10", default=None, metavar="ROOT", help="use CIFAR-10 from ROOT (torchvision layout)")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    if args.cifar10:
        train, test = advkit.data.load("cifar10", root=args.cifar10)
        classes, source = 10, f"CIFAR-10 test images (first {args.n})"
    else:
        rng = np.random.default_rng(args.seed)
        train, test = crops(args.train, True, rng), crops(args.n, False, rng)
        classes, source = len(PHOTOS), "STAND-IN (no CIFAR-10 here): 32x32 crops of 6 scikit-image photographs"
    model = advkit.models.SmallCNN(in_channels=3, num_classes=classes, input_size=32)
    start = time.perf_counter()
    advkit.train.fit(model, train, epochs=args.epochs, seed=args.seed, device="cpu", progress=False)
    print(f"{source}; SmallCNN trained {args.epochs} epochs ({time.perf_counter() - start:.0f} s)")
    start = time.perf_counter()
    report = advkit.evaluate(model.eval(), test, attacks=["fgsm"], eps=[0], n=args.n, device="cpu", seed=args.seed,
                             progress=False, checks=False, examples=0, corruptions="imagenet-c")
    result = report["model"]
    print(f"{len(result.labels)} test images; ImageNet-C (imagecorruptions) at severities 1-5 took "
          f"{result.seconds['corruptions']:.0f} s ({time.perf_counter() - start:.0f} s in all)\n")
    print(to_markdown(corruption_tables(result)[0]))


if __name__ == "__main__":
    main()

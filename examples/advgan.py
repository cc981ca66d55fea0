"""Train an AdvGAN against a SmallCNN on the embedded MNIST-5k, attack test images it never saw in one
forward pass, and compare with PGD-40.

    python examples/advgan.py                        # trains both, prints the comparison, saves advgan.pt
    python examples/advgan.py --steps 300 --n 1000   # a longer training, every test image

Prints the clean accuracy, ``AdvGAN: accuracy A% on N unseen images, T ms per image`` and the same line
for PGD-40, then where the trained attack was saved (``AdvGAN.load(path, model)`` brings it back).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import advkit
from advkit.attacks import PGD, AdvGAN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eps", type=float, default=0.3, help="L-inf budget")
    parser.add_argument("--steps", type=int, default=80, help="AdvGAN generator steps")
    parser.add_argument("--epochs", type=int, default=2, help="SmallCNN training epochs")
    parser.add_argument("--n", type=int, default=500, help="test images to attack")
    parser.add_argument("--out", type=Path, default=Path("advgan.pt"))
    args = parser.parse_args()

    train, test = advkit.data.load("mnist5k")
    torch.manual_seed(0)
    model = advkit.models.SmallCNN()
    advkit.train.fit(model, train, epochs=args.epochs, seed=0, device="cpu", progress=False)
    model.eval()

    advgan = AdvGAN(model, eps=args.eps)
    advgan.fit(train, steps=args.steps, batch_size=128, seed=0, progress=False)

    x, y = test.tensors[0][:args.n], test.tensors[1][:args.n]
    with torch.no_grad():
        print(f"clean: accuracy {(model(x).argmax(1) == y).float().mean().item():.1%} on {len(x)} unseen images")
    for name, attack in (("AdvGAN", advgan), ("PGD-40", PGD(model, eps=args.eps, steps=40))):
        t0 = time.perf_counter()
        result = attack.run(x, y)
        ms = 1e3 * (time.perf_counter() - t0) / len(x)
        print(f"{name}: accuracy {1 - result.success.float().mean().item():.1%} on {len(x)} unseen images, "
              f"{ms:.2f} ms per image")
    print(f"saved: {advgan.save(args.out)}")


if __name__ == "__main__":
    main()

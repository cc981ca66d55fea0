"""pix2pix-style paired translation on mnist5k (issue 4, item 3): does the L1 term help?

Trains the same Translator/pair-Discriminator twice from the same initial weights, with
``l1_weight`` = 100 and = 0, on a paired task (default: Sobel edge map -> digit), and records on
held-out test pairs, every ``--eval-every`` steps, the mean L1 error of the outputs and a reference
classifier's accuracy on them against the digits' labels. Prints a table and writes JSON + grids.

    OMP_NUM_THREADS=1 python benchmarks/gan_pix2pix.py --steps 600 --out out/gan_pix2pix
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import advkit
from advkit.core import Hook
from advkit.gan import Discriminator, GANTrainer, Translator
from advkit.gan.report import reference_classifier, save_grid, translation_quality
from advkit.gan.tasks import TASKS, paired


def run(l1_weight: float, args, train_pairs, test_pairs, labels, classifier, out: Path) -> list[dict]:
    torch.manual_seed(args.seed)
    G = Translator(1, 1, latent_dim=8, width=args.width)
    D = Discriminator(1, 28, cond_channels=1, width=args.width)
    trainer = GANTrainer(G, D, loss=args.loss, conditional="image", l1_weight=l1_weight, ema_decay=None, device="cpu",
                         seed=args.seed)
    cond, target = test_pairs.tensors
    rows: list[dict] = []

    class Evaluate(Hook):
        def round_end(self, r: int) -> None:
            if (r + 1) % args.eval_every == 0:
                rows.append({"step": r + 1, **translation_quality(trainer, classifier, cond, target, labels)})
                print(json.dumps({"l1_weight": l1_weight, **rows[-1]}), flush=True)

    trainer.fit(train_pairs, steps=args.steps, batch_size=64, progress=False, hooks=[Evaluate()])
    fake = trainer.sample(condition=cond[:30])
    save_grid(torch.stack([cond[:30], fake, target[:30]], 1).flatten(0, 1), out / f"pairs_l1_{l1_weight:g}.png",
              nrow=15)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="edges", choices=[t for t in TASKS if t != "colorize"])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--loss", default="hinge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/gan_pix2pix")
    args = p.parse_args()
    out = Path(args.out)
    train, test = advkit.data.load("mnist5k")
    classifier = reference_classifier(train, cache=out / "classifier.pt")
    train_pairs, test_pairs = paired(train, args.task), paired(test, args.task)
    results = {w: run(w, args, train_pairs, test_pairs, test.tensors[1], classifier, out) for w in (100.0, 0.0)}
    print(f"\n{'step':>6} | {'L1 (w=100)':>10} {'acc (w=100)':>11} | {'L1 (w=0)':>9} {'acc (w=0)':>9}")
    for a, b in zip(results[100.0], results[0.0], strict=True):
        print(f"{a['step']:>6} | {a['l1']:>10.4f} {a['classifier_accuracy']:>11.3f} | "
              f"{b['l1']:>9.4f} {b['classifier_accuracy']:>9.3f}")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "l1_100": results[100.0], "l1_0": results[0.0]},
                                                 indent=2))


if __name__ == "__main__":
    main()

"""Train a standard SmallCNN, defend a copy with adversarial training, and compare the two in one report.

    python examples/defend_and_compare.py                          # PGD adversarial training at eps 0.3
    python examples/defend_and_compare.py --method fgsm-rs         # fast adversarial training, a few times cheaper
    python examples/defend_and_compare.py --method trades --epochs 10 --out trades-report

It prints the defense's history (clean and PGD accuracy after each epoch), then the change in clean
accuracy and the robust gain per eps, and writes the report folder (report.html, comparison.png, ...).
The command line does the same, with fine-tuning and augmentation too: ``advkit defend --help``.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

import advkit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="pgd", choices=["pgd", "fgsm-rs", "trades"])
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=None, help="adversarial-training epochs (default: the method's)")
    parser.add_argument("--data", default="mnist5k", choices=["mnist5k", "digits"])
    parser.add_argument("--n", type=int, default=500, help="test images in the report")
    parser.add_argument("--out", type=Path, default=Path("defense-report"))
    args = parser.parse_args()

    train, test = advkit.data.load(args.data)
    x = train.tensors[0]
    torch.manual_seed(0)
    standard = advkit.defenses.defense_model(in_channels=x.shape[1], num_classes=10, input_size=x.shape[-1])
    advkit.train.fit(standard, train, epochs=8, seed=0)                 # plain training: the model before
    print(f"standard model: clean accuracy {advkit.train.accuracy(standard, test):.1%}")

    defended, history = advkit.defenses.adversarial_training(           # a copy, trained from the same weights
        copy.deepcopy(standard), train, method=args.method, eps=args.eps, epochs=args.epochs, eval_data=test, seed=0)
    for record in history:
        print(f"epoch {record.epoch}: clean {record.clean_accuracy:.1%}, PGD-10 at eps {args.eps:g} "
              f"{record.robust_accuracy:.1%}")

    report = advkit.evaluate({"standard": standard, "defended": defended}, test, attacks=["fgsm", "pgd-40"],
                             eps=[args.eps * k / 4 for k in range(5)], n=args.n, baseline="standard")
    comparison = report.comparisons["defended"]
    print(f"clean accuracy: {comparison.before.clean_accuracy:.1%} -> {comparison.after.clean_accuracy:.1%} "
          f"({100 * comparison.clean_change:+.1f} points)")
    for eps, before, after in zip(comparison.eps, comparison.before.accuracy("worst"),
                                  comparison.after.accuracy("worst"), strict=True):
        print(f"worst case at eps {eps:.3g}: {before:.1%} -> {after:.1%} ({100 * (after - before):+.1f} points)")
    for check in report.checks:
        if check.status == "FAIL":
            print(f"check failed on {check.model}: {check.name}: {check.message}")
    print(f"report: {report.save(args.out)}")


if __name__ == "__main__":
    main()

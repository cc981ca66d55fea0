"""Train (or load) a SmallCNN on the embedded MNIST-5k, attack it with PGD, and save a picture.

    python examples/attack_a_classifier.py                       # trains, saves smallcnn.pt and pgd.png
    python examples/attack_a_classifier.py --model smallcnn.pt   # loads instead of training

The PNG has three rows: clean images, adversarial images, and the perturbation amplified to the
full grey range, each titled with the model's prediction.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import advkit  # noqa: E402


def get_model(path: Path, train) -> torch.nn.Module:
    """Load the SmallCNN at ``path``, or train one (a minute on a CPU) and save it there."""
    model = advkit.models.SmallCNN()
    if path.exists():
        advkit.models.load_state_dict(model, path)
    else:
        advkit.train.fit(model, train, epochs=8, seed=0, device="cpu")
        torch.save(model.state_dict(), path)
    return model.eval()


def save_grid(x: torch.Tensor, x_adv: torch.Tensor, pred: torch.Tensor, pred_adv: torch.Tensor, out: Path) -> None:
    """Clean / adversarial / amplified perturbation, one column per image."""
    delta = x_adv - x
    amplified = 0.5 + delta / (2 * delta.abs().amax().clamp_min(1e-12))
    rows = [("clean", x, pred), ("adversarial", x_adv, pred_adv), ("perturbation (amplified)", amplified, None)]
    fig, axes = plt.subplots(3, len(x), figsize=(1.3 * len(x), 4.4))
    for r, (label, images, preds) in enumerate(rows):
        for c in range(len(x)):
            ax = axes[r, c]
            ax.imshow(images[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if preds is not None:
                ax.set_title(f"pred {int(preds[c])}", fontsize=8, color="black" if r == 0 else "red")
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("smallcnn.pt"))
    parser.add_argument("--eps", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=Path("pgd.png"))
    args = parser.parse_args()

    train, test = advkit.data.load("mnist5k")
    model = get_model(args.model, train)
    x, y = test.tensors[0][:10], test.tensors[1][:10]
    result = advkit.attacks.PGD(model, eps=args.eps, steps=40, seed=0).run(x, y)
    with torch.no_grad():
        pred, pred_adv = model(x).argmax(1), model(result.x_adv).argmax(1)
    print(f"clean accuracy {float((pred == y).float().mean()):.0%}, under PGD-40 at eps={args.eps}: "
          f"{float((pred_adv == y).float().mean()):.0%}")
    save_grid(x, result.x_adv, pred, pred_adv, args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()

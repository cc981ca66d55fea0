"""What the CLI, the demo and the benchmarks write about a GAN: sample grids, loss curves, a
reference classifier for the offline metrics, one dictionary of quality numbers, and the run's
summary (its options, steps, metrics and last losses)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import models, train
from ..data import as_tensors
from ..figures import new_figure
from ..files import save_tensors
from . import metrics
from .trainer import GANTrainer


def save_grid(images: Tensor, path: str | Path, nrow: int = 10) -> Path:
    """Tile (N, C, H, W) images in [0, 1] into one PNG, ``nrow`` per row; returns its path.

    Args:
        images: the images.
        path: the PNG file to write (its folder is made).
        nrow: the images per row.
    """
    import torchvision

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image(images.clamp(0, 1), str(path), nrow=nrow, padding=2, pad_value=1.0)
    return path


def plot_losses(history: dict[str, list], path: str | Path) -> Path:
    """D and G losses (and L1, when recorded) over steps, smoothed over a short window, as a PNG;
    rollbacks of the divergence guard are marked; returns its path.

    Args:
        history: a :meth:`GANTrainer.fit` history.
        path: the PNG file to write (its folder is made).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = new_figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    for key in ("d_loss", "g_loss", "l1"):
        values = torch.tensor(history.get(key, []), dtype=torch.float64)
        if len(values):
            window = max(1, len(values) // 100)
            smooth = values.unfold(0, window, 1).mean(1) if len(values) >= window else values
            ax.plot(torch.arange(len(smooth)) + window, smooth, label=key)
    for event in history.get("rollbacks", []):
        ax.axvline(event["step"], color="red", alpha=0.4)
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_points(samples: Tensor, centres: Tensor, path: str | Path, title: str = "") -> Path:
    """A scatter plot of 2-D ``samples`` with the mixture's ``centres`` marked, as a PNG, titled
    ``title`` (shown literally, without matplotlib's math parsing); returns its path.

    Args:
        samples: the (N, 2) generated points.
        centres: the mixture's (modes, 2) centres.
        path: the PNG file to write (its folder is made).
        title: the plot's title.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = new_figure(figsize=(4, 4))
    ax = fig.add_subplot()
    points = samples.detach().cpu()
    ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.4, label="generated")
    ax.scatter(centres[:, 0], centres[:, 1], marker="x", color="red", s=60, label="true modes")
    ax.set_aspect("equal")
    ax.set_title(title, parse_math=False)  # the caller's text as it is (a '$' is a dollar sign)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def reference_classifier(data, epochs: int = 8, seed: int = 0, cache: str | Path | None = None,
                         progress: bool = False) -> nn.Module:
    """A SmallCNN trained on ``data`` (through ``advkit.train.fit``, a progress bar with ``progress``), the
    feature extractor and judge of the offline metrics; kept in ``cache`` (a state_dict file) when
    given, so runs can share it.

    Args:
        data: a Dataset, DataLoader or ``(x, y)`` pair of labelled images.
        epochs: the training epochs.
        seed: seeds the initialisation and the training.
        cache: a state_dict file to read the classifier from, or to write it into once trained.
        progress: show a progress bar.
    """
    x, _ = as_tensors(data)
    model = models.SmallCNN(in_channels=x.shape[1], input_size=x.shape[-1])
    if cache is not None and Path(cache).exists():
        models.load_state_dict(model, cache)
        return model.eval()
    torch.manual_seed(seed)
    model = models.SmallCNN(in_channels=x.shape[1], input_size=x.shape[-1])
    train.fit(model, data, epochs=epochs, seed=seed, device="cpu", progress=progress)
    if cache is not None:
        save_tensors(model.state_dict(), cache)
    return model.cpu().eval()


def quality(trainer: GANTrainer, classifier: nn.Module, train_data, test_data, n: int | None = None, seed: int = 1,
            ema: bool = True) -> dict[str, float]:
    """Classifier-FID of ``n`` samples vs the test split next to the FID of ``n`` train images vs the
    test split (same sizes, so the small-sample bias is the same), their ratio, class statistics of
    the samples (from the EMA generator unless ``ema=False``) and, for a class-conditional trainer, the
    classifier's accuracy on the requested labels and the within-class spread of the samples relative
    to that of the test images (``spread_ratio``; 1 means as varied as real data).

    Args:
        trainer: the trained trainer.
        classifier: the feature extractor and judge (:func:`reference_classifier`).
        train_data: the training images.
        test_data: the test images and labels.
        n: the number of samples (default and at most: the training images').
        seed: seeds the samples' noise.
        ema: sample from the EMA generator.
    """
    x_train, _ = as_tensors(train_data)
    x_test, y_test = as_tensors(test_data)
    n = min(n or len(x_train), len(x_train))
    labels = torch.arange(n) % trainer.num_classes if trainer.options.conditional == "class" else None
    samples = trainer.sample(n, labels=labels, seed=seed, ema=ema)
    test_feats = metrics.extract(classifier, x_test)
    fid = metrics.frechet_distance(metrics.extract(classifier, samples), test_feats)
    base = metrics.frechet_distance(metrics.extract(classifier, x_train[:n]), test_feats)
    out = {"fid_samples_vs_test": fid, "fid_train_vs_test": base, "fid_ratio": fid / base, "n_samples": n,
           **metrics.class_statistics(classifier, samples)}
    if labels is not None:
        out["conditional_accuracy"] = metrics.conditional_accuracy(classifier, samples, labels)
        out["spread_ratio"] = metrics.within_class_spread(samples, labels) / metrics.within_class_spread(x_test, y_test)
    return out


@torch.no_grad()
def translation_quality(trainer: GANTrainer, classifier: nn.Module, condition: Tensor, target: Tensor, labels: Tensor,
                        seed: int = 1) -> dict[str, float]:
    """A paired (pix2pix) generator on held-out pairs: mean L1 error to the targets and the classifier's
    accuracy on the outputs against the targets' labels.

    Args:
        trainer: the trained image-conditional trainer.
        classifier: the judge of the outputs' classes.
        condition: the held-out condition images.
        target: their target images.
        labels: the targets' labels.
        seed: seeds the outputs' noise.
    """
    outputs = trainer.sample(condition=condition, seed=seed)
    return {"l1": float((outputs - target).abs().mean()),
            "classifier_accuracy": metrics.conditional_accuracy(classifier, outputs, labels)}


def run_summary(trainer: GANTrainer, metrics: dict[str, float]) -> dict[str, Any]:
    """A trained run as a GAN report records it: the trainer's options (:meth:`GANOptions.record
    <advkit.gan.options.GANOptions.record>`), its steps, ``metrics``, the divergence guard's rollbacks and
    the last D and G losses (empty lists before the first step).

    Args:
        trainer: the trained trainer.
        metrics: its quality numbers (:func:`quality` or :func:`translation_quality`).
    """
    history = trainer.history
    return {"options": trainer.options.record(), "steps": trainer.step, "metrics": metrics,
            "rollbacks": history["rollbacks"], "final_d_loss": history["d_loss"][-1:],
            "final_g_loss": history["g_loss"][-1:]}

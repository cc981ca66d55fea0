"""GAN metrics that work offline: Fréchet distance on any features, classifier-FID from an advkit
classifier's penultimate layer (Inception weights cannot be downloaded here), class coverage and
entropy of samples, and conditional accuracy.

Fréchet distances depend on the number of samples (the estimate is biased upwards for small sets),
so compare them only at equal sizes.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..core import frozen

Extractor = Callable[[Tensor], Tensor]


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    """``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between Gaussians fitted to two (N, D)
    feature sets, in float64.

    ``tr((S_a S_b)^(1/2))`` is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix ``S_a^(1/2) S_b S_a^(1/2)`` (same spectrum), which avoids the complex parts and NaNs of
    a general matrix square root.

    Args:
        feats_a: the first (N, D) feature set (at least 2 rows).
        feats_b: the second (M, D) feature set (at least 2 rows).
    """
    a, b = (torch.as_tensor(f).detach().double().flatten(1).cpu() for f in (feats_a, feats_b))
    if a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError("need two sets of >= 2 feature vectors of the same width; "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _psd_sqrt(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def _psd_sqrt(m: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T


@torch.no_grad()
def extract(extractor: nn.Module | Extractor, x: Tensor, batch_size: int = 500) -> Tensor:
    """Features of ``x`` from ``extractor.features`` when it has one (advkit classifiers), else from
    calling it; modules run in eval mode and are restored. Returns (N, D) on the CPU.

    Args:
        extractor: a module (its ``features`` when it has them) or a function of a batch.
        x: the inputs.
        batch_size: the inputs per call.
    """
    fn = getattr(extractor, "features", extractor)
    device = _device_of(extractor)

    def run() -> Tensor:
        return torch.cat([fn(x[i:i + batch_size].to(device)).flatten(1).cpu() for i in range(0, len(x), batch_size)])

    if isinstance(extractor, nn.Module):
        with frozen(extractor):
            return run()
    return run()


def classifier_fid(extractor: nn.Module | Extractor, samples: Tensor, reference: Tensor,
                   batch_size: int = 500) -> float:
    """Fréchet distance between ``samples`` and ``reference`` images in the extractor's feature space.

    Args:
        extractor: as in :func:`extract`.
        samples: the generated images.
        reference: the real images.
        batch_size: the images per call.
    """
    return frechet_distance(extract(extractor, samples, batch_size), extract(extractor, reference, batch_size))


@torch.no_grad()
def predict(classifier: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """Softmax class probabilities (N, C) on the CPU, the classifier in eval mode (restored after).

    Args:
        classifier: a module mapping inputs to logits.
        x: the inputs.
        batch_size: the inputs per call.
    """
    device = _device_of(classifier)
    with frozen(classifier):
        return torch.cat([classifier(x[i:i + batch_size].to(device)).softmax(1).cpu()
                          for i in range(0, len(x), batch_size)])


def class_statistics(classifier: nn.Module, samples: Tensor, min_share: float = 0.01) -> dict[str, float]:
    """How samples spread over classes under ``classifier``.

    ``classes_covered``: classes predicted for at least ``min_share`` of the samples; ``label_entropy``:
    entropy (nats) of the histogram of predicted classes (log C when uniform); ``mean_confidence``:
    mean top probability; ``inception_score``: ``exp E KL(p(y|x) || p(y))`` with this classifier.

    Args:
        classifier: the judge of the samples' classes.
        samples: the generated samples.
        min_share: the share of the samples a class needs to count as covered.
    """
    probs = predict(classifier, samples)
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double()
    share = counts / counts.sum()
    marginal = probs.double().mean(0)
    kl = (probs.double() * (probs.double().clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1).mean()
    return {
        "classes_covered": int((share >= min_share).sum()),
        "num_classes": int(probs.shape[1]),
        "label_entropy": float(-(share[share > 0] * share[share > 0].log()).sum()),
        "max_entropy": math.log(probs.shape[1]),
        "mean_confidence": float(probs.max(1).values.mean()),
        "inception_score": float(kl.exp()),
    }


def conditional_accuracy(classifier: nn.Module, samples: Tensor, labels: Tensor) -> float:
    """Share of class-conditional samples that the classifier assigns to the label they were asked for.

    Args:
        classifier: the judge of the samples' classes.
        samples: the generated samples.
        labels: the label each sample was asked for.
    """
    if len(samples) != len(labels):
        raise ValueError(f"samples and labels differ in number: {len(samples)} vs {len(labels)}")
    return float((predict(classifier, samples).argmax(1) == labels.cpu()).double().mean())


def within_class_spread(x: Tensor, labels: Tensor) -> float:
    """Mean over classes of the mean pairwise L2 distance between the (flattened) samples of one
    class: how varied each class is (0 when every class collapses to one sample). Classes with fewer
    than two samples are skipped.

    Args:
        x: the samples.
        labels: their classes.
    """
    x, labels = x.detach().flatten(1).double().cpu(), torch.as_tensor(labels).cpu()
    if len(x) != len(labels):
        raise ValueError(f"x and labels differ in number: {len(x)} vs {len(labels)}")
    spreads = []
    for c in labels.unique():
        members = x[labels == c]
        if len(members) >= 2:
            n = len(members)
            spreads.append(float(torch.pdist(members).sum() / (n * (n - 1) / 2)))
    if not spreads:
        raise ValueError("need at least one class with two or more samples")
    return sum(spreads) / len(spreads)


def _device_of(module) -> torch.device:
    params = list(module.parameters()) if isinstance(module, nn.Module) else []
    return params[0].device if params else torch.device("cpu")


__all__ = [
    "class_statistics",
    "classifier_fid",
    "conditional_accuracy",
    "extract",
    "frechet_distance",
    "predict",
    "within_class_spread",
]

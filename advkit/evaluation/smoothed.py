"""``evaluate(..., norm="l2", smoothing=0.25)``: the smoothed classifier of a model (advkit/smoothing.py), its
certified accuracy against the L2 radius beside its empirical accuracy under attack, on the evaluation's grid:
its options and its result here, how they are measured in certification.py.

Per data batch: CERTIFY gives each sample a class (or an abstention) and a radius, so the sample is certified
at every radius up to its own; the empirical side attacks the base model under the smoothing noise
(:class:`~advkit.smoothing.NoisyClassifier`) with the evaluation's attacks, each averaging its gradients over
``eot`` noise draws, at each radius upward on the samples still standing, and judges every point an attack
returns by PREDICT of the smoothed classifier: a sample stands at a radius while PREDICT names its label on
every point found within it (an abstention counts as wrong). A certificate that PREDICT contradicts (it
names another class on a point within the certified radius) means that CERTIFY or PREDICT erred; each errs
with probability at most alpha, which the ``certified`` sanity check (checks.py) turns into its slack."""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from torch import Tensor

from ..validation import check_number
from .stats import wilson

#: Forwards per gradient of the attacks on the noisy model (AutoAttack's rand version takes 20 too).
SMOOTHING_EOT = 20


@dataclass(frozen=True)
class SmoothingOptions:
    """``evaluate``'s ``smoothing``: the smoothed classifier and how it is certified and attacked.

    Args:
        sigma: the noise's standard deviation (> 0).
        n0: CERTIFY's selection draws per sample.
        n: CERTIFY's estimation draws per sample.
        alpha: the failure probability of CERTIFY and of PREDICT, and the sanity check's false-alarm rate.
        predict_n: PREDICT's draws for each point an attack returns.
        eot: noise draws each attack gradient averages.
        batch_size: noisy copies per forward when counting.
        empirical: attack the smoothed classifier (False: the certified curve alone).
    """

    sigma: float
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    predict_n: int = 1000
    eot: int = SMOOTHING_EOT
    batch_size: int = 1000
    empirical: bool = True

    def __post_init__(self) -> None:
        check_number(self.sigma, "smoothing sigma")
        for name in ("n0", "n", "predict_n", "eot", "batch_size"):
            check_number(getattr(self, name), f"smoothing {name}", low=1, low_open=False, integer=True)
        check_number(self.alpha, "smoothing alpha", high=1, high_open=True)
        if not isinstance(self.empirical, bool):
            raise TypeError(f"smoothing empirical must be True or False, got {self.empirical!r}")


def smoothing_options(value: Any) -> SmoothingOptions | None:
    """``evaluate``'s ``smoothing`` as options: None or False is off, a number is sigma with the defaults, a
    dict gives the fields (``dict(sigma=0.25, n=1000)``), a :class:`SmoothingOptions` is itself."""
    if value is None or value is False:
        return None
    if isinstance(value, SmoothingOptions):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return SmoothingOptions(float(value))
    if isinstance(value, dict):
        known = [f.name for f in fields(SmoothingOptions)]
        if set(value) - set(known) or "sigma" not in value:
            raise ValueError(f"smoothing: a dict needs sigma and takes {', '.join(known)}; "
                             f"got {', '.join(map(str, value))}")
        return SmoothingOptions(**value)
    raise TypeError("smoothing must be None, a sigma, a dict of settings or SmoothingOptions, "
                    f"got {type(value).__name__}")


@dataclass
class SmoothedResult:
    """One model's smoothed classifier on the evaluation's radii (its eps grid, L2). Per sample and radius:
    ``certified`` (CERTIFY's class is the label, its radius at least this one), ``empirical`` (PREDICT named
    the label on every point the attacks found within the radius; None without attacks) and ``refuted``
    (PREDICT named another class, not an abstention, on a point within it). ``radius``: each sample's
    certified radius (0 where abstained or wrong); ``predictions``: PREDICT calls per sample at most."""

    options: SmoothingOptions
    radii: list[float]
    radius: Tensor
    certified: Tensor
    empirical: Tensor | None
    refuted: Tensor | None
    attacks: list[str] = field(default_factory=list)
    predictions: int = 0

    def certified_curve(self) -> list[tuple[float, float]]:
        """Certified accuracy at each radius."""
        return [(r, float(a)) for r, a in zip(self.radii, self.certified.float().mean(0).tolist(), strict=True)]

    def empirical_curve(self) -> list[tuple[float, float]] | None:
        """Accuracy of the smoothed classifier under the attacks at each radius (None when not attacked)."""
        if self.empirical is None:
            return None
        return [(r, float(a)) for r, a in zip(self.radii, self.empirical.float().mean(0).tolist(), strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the settings, the attacks and, per radius, the accuracies with 95% Wilson intervals and
        the refuted certificates."""
        n, points = len(self.certified), []
        for j, r in enumerate(self.radii):
            c = int(self.certified[:, j].sum())
            point = {"radius": r, "certified": c / n, "certified_ci95": list(wilson(c, n))}
            if self.empirical is not None:
                e = int(self.empirical[:, j].sum())
                point |= {"empirical": e / n, "empirical_ci95": list(wilson(e, n)),
                          "refuted": int((self.certified[:, j] & self.refuted[:, j]).sum())}
            points.append(point)
        return {"settings": asdict(self.options), "attacks": self.attacks, "curve": points,
                "mean_certified_radius": float(self.radius.mean())}

"""Before and after a defense: one model's evaluation against a baseline's, on the same samples.

Every number of a :class:`Comparison` is a difference of the two models' own numbers (after minus
before), so it reads straight off their curves and tables: the change in clean accuracy (negative
when the defense costs clean accuracy), the robust-accuracy gain per attack and eps, and the gain in
accuracy under each corruption, with the corruption error of the one relative to the other (Hendrycks &
Dietterich's CE: the errors summed over severities, divided).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..data.suites import mean_corruption_error
from .results import WORST, ModelResult


@dataclass(frozen=True)
class Comparison:
    """``after`` against ``before`` (the baseline), both evaluated on the same samples and eps grid
    (ValueError otherwise)."""

    before: ModelResult
    after: ModelResult

    def __post_init__(self) -> None:
        if self.before.eps != self.after.eps:
            raise ValueError(f"cannot compare {self.after.name!r} with {self.before.name!r}: evaluated on other eps "
                             f"grids ({self.after.eps} vs {self.before.eps})")
        if not torch.equal(self.before.labels, self.after.labels):
            raise ValueError(f"cannot compare {self.after.name!r} with {self.before.name!r}: evaluated on other "
                             "samples; evaluate both on the same data and n")

    @property
    def eps(self) -> list[float]:
        return self.before.eps

    @property
    def clean_change(self) -> float:
        """After minus before clean accuracy: negative when the defense costs clean accuracy."""
        return self.after.clean_accuracy - self.before.clean_accuracy

    @property
    def attacks(self) -> list[str]:
        """The curves both models have: the attacks that ran on both, then the worst case."""
        return [a for a in self.before.ran if a in self.after.ran] + [WORST]

    def robust_gain(self, attack: str = WORST) -> list[float]:
        """After minus before accuracy under ``attack`` at each eps."""
        return [a - b for b, a in zip(self.before.accuracy(attack), self.after.accuracy(attack), strict=True)]

    @property
    def corruptions(self) -> list[str]:
        """The corruptions both models were evaluated on."""
        return [c for c in self.before.corrupted if c in self.after.corrupted]

    def corruption_accuracy(self, name: str) -> tuple[float, float]:
        """``(before, after)`` accuracy under corruption ``name``, over its severities."""
        return (_mean(self.before.corrupted[name]), _mean(self.after.corrupted[name]))

    @property
    def mean_corruption_accuracy(self) -> tuple[float, float] | None:
        """``(before, after)`` accuracy over every shared corruption and severity (None: no corruption shared)."""
        names = self.corruptions
        if not names:
            return None
        return tuple(_mean(torch.stack([r.corrupted[c] for c in names])) for r in (self.before, self.after))

    @property
    def corruption_errors(self) -> dict[str, float | None]:
        """Each shared corruption's CE of ``after`` relative to ``before`` (Hendrycks & Dietterich: the errors
        summed over severities, divided; below 1 when the defense makes fewer errors; None where ``before``
        makes none)."""
        shared = {c: self.after.corrupted[c] for c in self.corruptions}
        if not shared:
            return {}
        return replace(self.after, corrupted=shared).corruption_errors(self.before)

    @property
    def mean_corruption_error(self) -> float | None:
        """The mCE of ``after`` relative to ``before``: the mean of :attr:`corruption_errors` (None: none shared,
        or one undefined)."""
        return mean_corruption_error(self.corruption_errors)

    @property
    def failed_checks(self) -> dict[str, list[str]]:
        """The names of each model's failed sanity checks (a robust gain on a model that fails them may
        be gradient masking rather than robustness)."""
        return {r.name: [c.name for c in r.checks if c.status == "FAIL"] for r in (self.before, self.after)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the two models' numbers and their differences."""
        out: dict[str, Any] = {
            "before": self.before.name, "after": self.after.name, "eps": list(self.eps),
            "clean_accuracy": {"before": self.before.clean_accuracy, "after": self.after.clean_accuracy,
                               "change": self.clean_change},
            "robust_accuracy": {a: {"before": self.before.accuracy(a), "after": self.after.accuracy(a),
                                    "gain": self.robust_gain(a)} for a in self.attacks},
            "failed_checks": self.failed_checks,
        }
        if self.corruptions:
            rows = {c: self.corruption_accuracy(c) for c in self.corruptions}
            rows["mean"] = self.mean_corruption_accuracy
            out["corruption_accuracy"] = {c: {"before": b, "after": a, "gain": a - b} for c, (b, a) in rows.items()}
            ces = self.corruption_errors
            out["corruption_error"] = {**ces, "mean": mean_corruption_error(ces)}
        return out


def _mean(mask: torch.Tensor) -> float:
    return float(mask.float().mean())


__all__ = ["Comparison"]

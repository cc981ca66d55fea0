"""What an evaluation measured for one model: per-sample robustness per attack and eps, costs,
checks and a few examples. Reports are built from these; every number is derived, none stored twice."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..data.suites import ErrorTable, corruption_errors, mean_corruption_error
from .smoothed import SmoothedResult
from .stats import wilson

WORST = "worst"


@dataclass
class Cost:
    """Work spent on one (attack, eps) point: samples attacked, per-image passes, seconds, and how
    many of the samples it fooled the model gave non-finite (NaN/Inf) logits on (``nonfinite``)."""

    attacked: int = 0
    forwards: int = 0
    backwards: int = 0
    seconds: float = 0.0
    nonfinite: int = 0


@dataclass
class AttackRecord:
    """One attack over the eps grid: ``robust[i, j]`` is True when sample i survived at eps j.

    ``masked``: why the attack could not run (the model hides its input gradient); such a record
    has no ``robust`` and no costs, and no curve or worst case counts it. ``note``: why the
    evaluation added the attack itself (a gradient-free fallback)."""

    name: str
    description: Any
    robust: Tensor | None
    costs: list[Cost]
    masked: str = ""
    note: str = ""


@dataclass
class Example:
    """One sample for the report's picture grid: clean image, and the adversarial image from the
    smallest eps (and first attack) that fooled it, or from the largest eps when none did."""

    index: int
    label: int
    clean_pred: int
    x: Tensor
    x_adv: Tensor | None = None
    adv_pred: int | None = None
    attack: str = ""
    eps: float = 0.0
    fooled: bool = False


@dataclass
class Check:
    """One sanity check (after Carlini et al. 2019): passed, or a reason to distrust the numbers.
    ``cost``: the per-image passes and seconds the check spent (``attacked``: samples its own
    attacks ran on; ``forwards`` include the forward that checks fooled samples for NaN/Inf)."""

    name: str
    passed: bool
    message: str
    skipped: bool = False
    model: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)

    @property
    def status(self) -> str:
        return "skip" if self.skipped else ("pass" if self.passed else "FAIL")


@dataclass
class ModelResult:
    """Everything measured for one model on one eps grid. ``corrupted``: per corruption evaluated,
    an ``(n, 5)`` mask, True where sample i is classified correctly at severity j + 1;
    ``corruption_suite``: the name of the suite they come from (``"advkit"``, ``"imagenet-c"``,
    ``"cifar10-c"``...); ``corruption_baseline``: the reference errors its corruption errors divide by (or None);
    ``smoothed``: its smoothed classifier's certified and empirical curves (``evaluate(..., smoothing=)``)."""

    name: str
    eps: list[float]
    labels: Tensor
    clean: Tensor
    num_classes: int
    attacks: dict[str, AttackRecord]
    checks: list[Check] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    corrupted: dict[str, Tensor] = field(default_factory=dict)
    corruption_suite: str = ""
    corruption_baseline: ErrorTable | None = None
    smoothed: SmoothedResult | None = None

    def robust(self, attack: str) -> Tensor:
        """``(n, len(eps))`` survival mask of ``attack``; ``"worst"``: survived every attack that ran."""
        if attack == WORST:
            ran = [self.attacks[a].robust for a in self.ran]
            return torch.stack(ran).all(0) if ran else self.clean[:, None].expand(-1, len(self.eps))
        if self.attacks[attack].masked:
            raise KeyError(f"attack {attack!r} did not run: {self.attacks[attack].masked}")
        return self.attacks[attack].robust

    @property
    def ran(self) -> list[str]:
        """The attacks that ran (not masked), in order."""
        return [a for a, rec in self.attacks.items() if not rec.masked]

    @property
    def masked(self) -> dict[str, str]:
        """Attacks that could not run on this model, with the reason."""
        return {a: rec.masked for a, rec in self.attacks.items() if rec.masked}

    @property
    def names(self) -> list[str]:
        """The curves: every attack that ran, then the worst case."""
        return [*self.ran, WORST]

    @property
    def clean_accuracy(self) -> float:
        return int(self.clean.sum()) / len(self.clean)

    def accuracy(self, attack: str) -> list[float]:
        """Accuracy at each eps, as exact fractions k / n."""
        return [int(k) / len(self.labels) for k in self.robust(attack).sum(0)]

    def set_by(self, j: int) -> list[str]:
        """The attacks that set the worst case at grid point ``j``: those whose own accuracy there is the
        lowest (the worst case may sit lower still, where they fooled different samples)."""
        accuracy = {name: self.accuracy(name)[j] for name in self.ran}
        lowest = min(accuracy.values())
        return [name for name, value in accuracy.items() if value == lowest]

    def curve_passes(self) -> int:
        """Per-image passes (a forward or a backward of one image each count one) the curves spent."""
        return sum(c.forwards + c.backwards for name in self.ran for c in self.attacks[name].costs)

    def curve(self) -> dict[str, list[tuple[float, float]]]:
        return {name: list(zip(self.eps, self.accuracy(name), strict=True)) for name in self.names}

    def points(self, attack: str) -> list[dict[str, Any]]:
        """Per eps: accuracy, its 95% Wilson interval, the drop from clean accuracy and the cost."""
        robust, n, clean = self.robust(attack), len(self.labels), self.clean_accuracy
        rows = []
        for j, eps in enumerate(self.eps):
            k = int(robust[:, j].sum())
            lo, hi = wilson(k, n)
            row = {"eps": eps, "accuracy": k / n, "ci95": [lo, hi], "drop": clean - k / n}
            if attack != WORST:
                cost = self.attacks[attack].costs[j]
                row.update(attacked=cost.attacked, forwards=cost.forwards, backwards=cost.backwards,
                           seconds=cost.seconds, nonfinite=cost.nonfinite)
            rows.append(row)
        return rows

    def corruption_accuracy(self) -> dict[str, list[tuple[int, float]]]:
        """``{corruption: [(severity, accuracy), ...]}`` for severities 1..5, as exact fractions k / n."""
        n = len(self.labels)
        return {name: [(j + 1, int(k) / n) for j, k in enumerate(mask.sum(0))] for name, mask in self.corrupted.items()}

    def corruption_points(self, name: str) -> list[dict[str, Any]]:
        """Per severity of corruption ``name``: accuracy, its 95% Wilson interval and the drop from clean accuracy."""
        n, clean = len(self.labels), self.clean_accuracy
        return [{"severity": j + 1, "accuracy": int(k) / n, "ci95": list(wilson(int(k), n)), "drop": clean - int(k) / n}
                for j, k in enumerate(self.corrupted[name].sum(0))]

    def corruption_means(self) -> list[tuple[int, float]]:
        """``[(severity, accuracy), ...]``: the accuracy at each severity averaged over the corruptions."""
        if not self.corrupted:
            return []
        right = torch.stack(list(self.corrupted.values())).float().mean((0, 1))
        return [(j + 1, float(a)) for j, a in enumerate(right)]

    @property
    def mean_corruption_accuracy(self) -> float | None:
        """Accuracy over every corruption and severity evaluated (None when none was)."""
        if not self.corrupted:
            return None
        return float(torch.stack(list(self.corrupted.values())).float().mean())

    def corruption_error_rates(self) -> dict[str, list[float]]:
        """``{corruption: [top-1 error at severity 1, 2, ...]}`` (one minus the accuracy)."""
        return {name: [1 - a for _, a in points] for name, points in self.corruption_accuracy().items()}

    def corruption_errors(self, baseline: ErrorTable | ModelResult | None = None) -> dict[str, float | None]:
        """Each corruption's CE, ``sum_s E(self, c, s) / sum_s E(baseline, c, s)``
        (:func:`advkit.data.suites.corruption_errors`), against ``baseline``: an
        :class:`~advkit.data.suites.ErrorTable`, another model's result on the same corruptions, or
        None for :attr:`corruption_baseline` (no baseline at all: an empty dict)."""
        baseline = self.corruption_baseline if baseline is None else baseline
        if baseline is None or not self.corrupted:
            return {}
        if isinstance(baseline, ModelResult):
            baseline = baseline.corruption_error_rates()
        return corruption_errors(self.corruption_error_rates(), baseline)

    @property
    def mean_corruption_error(self) -> float | None:
        """mCE against :attr:`corruption_baseline` (None without one, or where a CE is undefined)."""
        return mean_corruption_error(self.corruption_errors())

    def per_class(self, attack: str) -> dict[int, list[float]]:
        """Accuracy of each class at each eps (a class the data lacks is left out)."""
        robust = self.robust(attack).float()
        return {c: robust[self.labels == c].mean(0).tolist()
                for c in range(self.num_classes) if bool((self.labels == c).any())}

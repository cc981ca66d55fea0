"""What adversarial training reports: one record per epoch, and what the overfitting guard did."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EpochRecord:
    """One epoch: the training eps reached, the mean training loss, accuracy on the evaluation images
    (clean, and under PGD at the full eps), wall seconds (evaluation included) and, where the method
    guards against catastrophic overfitting, PGD accuracy on the held-out batch."""

    epoch: int
    eps: float
    train_loss: float
    clean_accuracy: float
    robust_accuracy: float
    seconds: float
    guard_accuracy: float | None = None


@dataclass
class History:
    """The epochs of one adversarial-training run, in order; indexable and iterable like a list.

    ``evaluated_on`` says where the accuracies come from ("eval_data", or "training data" when no
    evaluation data was given). Methods with a guard (FGSM-RS) set ``best_epoch``, the epoch of the best
    robust accuracy on the held-out batch, whose weights the model ends with, and ``guard_fired``, the
    epoch at which that accuracy collapsed and training stopped (None when it never did)."""

    method: str
    eps: float
    evaluated_on: str
    records: list[EpochRecord] = field(default_factory=list)
    guard_fired: int | None = None
    best_epoch: int | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[EpochRecord]:
        return iter(self.records)

    def __getitem__(self, i: int) -> EpochRecord:
        return self.records[i]

    @property
    def clean_accuracy(self) -> list[float]:
        return [r.clean_accuracy for r in self.records]

    @property
    def robust_accuracy(self) -> list[float]:
        return [r.robust_accuracy for r in self.records]

    @property
    def seconds(self) -> float:
        """Wall seconds of all epochs together."""
        return sum(r.seconds for r in self.records)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (what a ``weights_only`` checkpoint can hold)."""
        return {**asdict(self), "records": [asdict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> History:
        return cls(**{**state, "records": [EpochRecord(**r) for r in state["records"]]})


__all__ = ["EpochRecord", "History"]

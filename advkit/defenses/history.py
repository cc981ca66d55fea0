"""What a defense reports: one record per epoch, the run's settings, and what the overfitting guard did."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(kw_only=True)
class EpochRecord:
    """One epoch: the mean training loss, the clean accuracy on the evaluation images and wall seconds
    (evaluation included); where the defense measures them, the training eps reached, the accuracy under
    PGD at the full eps, the PGD accuracy on the held-out batch of a method that guards against
    catastrophic overfitting, and the mean accuracy under the corruptions trained against. With an
    average of the weights (the ``ema`` option) the accuracies are the average's (the model the run
    returns) and ``raw_clean_accuracy``/``raw_robust_accuracy`` those of the trained weights themselves.
    A measure the defense does not take is None."""

    epoch: int
    eps: float | None = None
    train_loss: float
    clean_accuracy: float
    robust_accuracy: float | None = None
    seconds: float
    guard_accuracy: float | None = None
    corruption_accuracy: float | None = None
    raw_clean_accuracy: float | None = None
    raw_robust_accuracy: float | None = None


@dataclass
class History:
    """The epochs of one defense's run, in order; indexable and iterable like a list.

    ``method`` names the defense (an adversarial-training method, ``"finetune"`` or ``"augmented"``),
    ``eps`` its training budget (None for augmented training), ``config`` the run's settings as its
    options record them (what checkpoints check a resume against). ``evaluated_on`` says where the
    accuracies come from ("eval_data", or "training data" when no evaluation data was given). Methods
    with a guard (FGSM-RS) set ``best_epoch``, the epoch of the best robust accuracy on the held-out
    batch, whose weights the model ends with, and ``guard_fired``, the epoch at which that accuracy
    collapsed and training stopped (None when it never did)."""

    method: str
    eps: float | None
    evaluated_on: str
    records: list[EpochRecord] = field(default_factory=list)
    guard_fired: int | None = None
    best_epoch: int | None = None
    config: dict[str, Any] = field(default_factory=dict)

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
    def robust_accuracy(self) -> list[float | None]:
        return [r.robust_accuracy for r in self.records]

    @property
    def seconds(self) -> float:
        """Wall seconds of all epochs together."""
        return sum(r.seconds for r in self.records)

    def table(self) -> list[dict[str, Any]]:
        """One row per epoch, with the measures this run took (the record's fields that are not None in
        every epoch), in field order."""
        taken = [f.name for f in fields(EpochRecord) if any(getattr(r, f.name) is not None for r in self.records)]
        return [{name: getattr(r, name) for name in taken} for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (what a ``weights_only`` checkpoint can hold)."""
        return {**asdict(self), "records": [asdict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> History:
        return cls(**{**state, "records": [EpochRecord(**r) for r in state["records"]]})


__all__ = ["EpochRecord", "History"]

"""How an evaluation splits over the ranks of a torchrun group without changing a number.

Every pass of :func:`advkit.evaluate` walks the data in batches of the one-process batch size, and a
batch's results depend on that batch alone (its samples' seeds come from their indices in the whole
data; an attack that draws per batch draws from its batch's own samples). So each rank takes a
contiguous share of the data batches (:func:`my_batches`), and the ranks' per-sample results,
gathered in rank order (:meth:`Walked.merge`), are the one-process results, for every attack.
The sanity checks split each of their passes the same way (:func:`my_rows`; by sample where what
runs is batch-independent, so that a probe smaller than a batch splits too).
Without a process group this is exactly the one-process computation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from ..distributed import my_shard
from .results import AttackRecord, Cost

#: The shown samples' adversarial examples: ``index -> (x_adv, eps, fooled)``.
Kept = dict[int, tuple[Tensor, float, bool]]


def my_batches(n: int, size: int) -> tuple[int, int]:
    """This rank's rows ``(start, stop)`` of ``n`` samples: its contiguous share
    (:func:`~advkit.distributed.my_shard`) of the batches of ``size`` one process makes."""
    first, last = my_shard(-(-n // size))
    return min(first * size, n), min(last * size, n)


def my_rows(rows: Tensor, size: int, by_sample: bool) -> Tensor:
    """This rank's contiguous share of ``rows`` (a sanity check's samples): by sample when what runs on
    them gives a sample the same result in any batch (``by_sample``: an attack that declares
    ``per_sample``, a gradient, a forward), else whole batches of ``size`` of the one-process batching."""
    if by_sample:
        return rows[slice(*my_shard(len(rows)))]
    return rows[slice(*my_batches(len(rows), size))]


def total_cost(costs: list[Cost]) -> Cost:
    """The ranks' costs of one point as one: counts summed, the seconds of the slowest rank."""
    return Cost(attacked=sum(c.attacked for c in costs), forwards=sum(c.forwards for c in costs),
                backwards=sum(c.backwards for c in costs), seconds=max(c.seconds for c in costs),
                nonfinite=sum(c.nonfinite for c in costs))


def summed(a: Cost, b: Cost) -> Cost:
    """Two batches' costs of one point on one rank: everything summed, seconds too."""
    return replace(total_cost([a, b]), seconds=a.seconds + b.seconds)


@dataclass
class Walked:
    """The per-sample results of the attack pass over some data batches, in order: per attack, the
    survival rows of each batch (``robust``), its cost at each eps, the shown samples' examples
    (``kept``); the attacks that could not run (``masked``: why), seconds spent per attack, and per
    corruption the masks of each batch."""

    robust: dict[str, list[Tensor]] = field(default_factory=dict)
    costs: dict[str, list[Cost]] = field(default_factory=dict)
    kept: dict[str, Kept] = field(default_factory=dict)
    masked: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    corruptions: dict[str, list[Tensor]] = field(default_factory=dict)

    def put(self, name: str, robust: Tensor, costs: list[Cost], kept: Kept) -> None:
        """Add the next batch's results for attack ``name``."""
        self.robust.setdefault(name, []).append(robust)
        before = self.costs.get(name)
        self.costs[name] = costs if before is None else [summed(a, b) for a, b in zip(before, costs, strict=True)]
        self.kept.setdefault(name, {}).update(kept)

    def add(self, other: Walked) -> None:
        """Take in the results of other attacks over the same batches."""
        for mine, theirs in ((self.robust, other.robust), (self.costs, other.costs), (self.kept, other.kept),
                             (self.masked, other.masked), (self.seconds, other.seconds)):
            mine.update(theirs)

    def record(self, name: str, description: object, note: str = "") -> AttackRecord:
        """Attack ``name``'s record over all the batches (masked: no curve; ``note`` only on a curve)."""
        if name in self.masked:
            return AttackRecord(name, description, None, [], masked=self.masked[name])
        return AttackRecord(name, description, torch.cat(self.robust[name]), self.costs[name], note=note)

    @property
    def corrupted(self) -> dict[str, Tensor]:
        """Per corruption, the ``(n, severities)`` mask of every batch's samples."""
        return {name: torch.cat(masks) for name, masks in self.corruptions.items()}

    @staticmethod
    def merge(parts: list[Walked]) -> Walked:
        """The ranks' results (each over its contiguous share of the batches, in rank order) as one:
        rows in order, counts summed, the slowest rank's seconds; masked on one rank is masked."""
        if len(parts) == 1:
            return parts[0]
        out = Walked()
        for part in parts:
            for name, rows in part.robust.items():
                out.robust.setdefault(name, []).extend(rows)
            for name, masks in part.corruptions.items():
                out.corruptions.setdefault(name, []).extend(masks)
            for name, kept in part.kept.items():
                out.kept.setdefault(name, {}).update(kept)
            out.masked |= {name: why for name, why in part.masked.items() if name not in out.masked}
            for name, seconds in part.seconds.items():
                out.seconds[name] = max(out.seconds.get(name, 0.0), seconds)
        for name in {name: None for part in parts for name in part.costs}:
            points = [part.costs[name] for part in parts if name in part.costs]
            out.costs[name] = [total_cost(list(point)) for point in zip(*points, strict=True)]
        return out

"""How an evaluation's attacks split over the ranks of a torchrun group without changing a number.

Two ways, chosen per attack by :func:`by_sample` from what the attack declares
(:attr:`advkit.attacks.Attack.per_sample`):

- by sample: an attack whose every random draw and decision is per sample (given per-sample
  seeds, :func:`advkit.rng.sample_seeds`) gives a sample the same result in any
  batch, so each rank walks the whole eps grid on its own contiguous share of the samples and the
  records are merged once (:func:`merge_curves`);
- by batch: any other attack (Square, AutoAttack, APGD-T, torchattacks', an object that declares
  nothing) may draw for a whole batch from its first sample's seed, so at each eps the ranks split
  the batches one process would attack, each attacks its contiguous run of them unchanged, and the
  results are gathered before the next eps (:func:`attack_at_shared`).

Without a process group both are exactly the one-process computation.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..attacks.capabilities import capability
from ..distributed import gather_call, my_shard, shard_bounds
from .batched import BatchSize, attack_at, batch_sizes
from .results import AttackRecord, Cost

Kept = dict[int, tuple[Tensor, float, bool]]


def by_sample(attack: Any) -> bool:
    """True when ``attack`` can be sharded by sample: it declares its draws and decisions per sample
    (``per_sample``; see the module's docstring)."""
    return bool(capability(attack, "per_sample"))


def total_cost(costs: list[Cost]) -> Cost:
    """The ranks' costs of one point as one: counts summed, the seconds of the slowest rank."""
    return Cost(attacked=sum(c.attacked for c in costs), forwards=sum(c.forwards for c in costs),
                backwards=sum(c.backwards for c in costs), seconds=max(c.seconds for c in costs),
                nonfinite=sum(c.nonfinite for c in costs))


def merge_curves(parts: list[tuple[AttackRecord, Kept]], n: int) -> tuple[AttackRecord, Kept]:
    """One record from each rank's curve on its :func:`~advkit.distributed.shard_bounds` rows of
    ``n`` samples: the rows of ``robust`` from their ranks, costs by :func:`total_cost`, the kept
    examples together. One part (one process) is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    records = [record for record, _ in parts]
    robust = torch.cat([rec.robust[slice(*shard_bounds(n, r, len(parts)))] for r, rec in enumerate(records)])
    costs = [total_cost(list(point)) for point in zip(*(rec.costs for rec in records), strict=True)]
    kept = {i: example for _, part in parts for i, example in part.items()}
    return AttackRecord(records[0].name, records[0].description, robust, costs), dict(sorted(kept.items()))


def attack_at_shared(attack: Any, x: Tensor, y: Tensor, todo: Tensor, eps: float, batch_size: int | BatchSize,
                     device: torch.device, seed: int, j: int = 0, starts: Tensor | None = None,
                     model: nn.Module | None = None) -> tuple[Tensor, Tensor, Cost]:
    """:func:`~advkit.evaluation.batched.attack_at` on every rank's contiguous run of the batches
    one process would make of ``todo``, gathered: the same results, in ``todo``'s order, on every rank."""
    unit = batch_sizes(batch_size).start  # the same on every rank, whatever a rank's memory made it halve to
    first, last = my_shard(-(-len(todo) // unit))
    mine = todo[first * unit:last * unit]
    parts = gather_call(lambda: attack_at(attack, x, y, mine, eps, batch_size, device, seed, j, starts, model))
    if len(parts) == 1:
        return parts[0]
    return (torch.cat([fooled for fooled, _, _ in parts]), torch.cat([ends for _, ends, _ in parts]),
            total_cost([cost for _, _, cost in parts]))

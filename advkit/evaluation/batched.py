"""Batched attack and prediction passes shared by the curves and the sanity checks."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core import frozen
from .results import Cost


def attack_at(attack: Any, x: Tensor, y: Tensor, todo: Tensor, eps: float, batch_size: int, device: torch.device,
              seed: int, j: int = 0, starts: Tensor | None = None) -> tuple[Tensor, Cost, Tensor]:
    """Attack rows ``todo`` at ``eps`` (the ``j``-th point of a grid) in batches, each row from its
    row of ``starts`` when given (a warm start). Returns the survival mask over all rows (rows not
    attacked count as survivors), what it cost, and where each attacked row ended (x elsewhere)."""
    survived = torch.ones(len(x), dtype=torch.bool)
    ends = x.clone()
    cost = Cost(attacked=len(todo))
    t0 = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        warm = {} if starts is None else {"x_init": starts[idx].to(device)}
        res = attack.run(x[idx].to(device), y[idx].to(device), eps=eps, seed=sample_seeds(seed, j, idx), **warm)
        survived[idx] = ~res.success.cpu()
        ends[idx] = res.x_adv.detach().cpu()
        cost.forwards, cost.backwards = cost.forwards + res.forwards, cost.backwards + res.backwards
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cost.seconds = time.perf_counter() - t0
    return survived, cost, ends


def sample_seeds(seed: int, eps_index: int, rows: Tensor) -> Tensor:
    """One reproducible seed per (eps, sample): a sample gets the same random start whether it is
    attacked with everyone or among the survivors, so survivors-only is never above full."""
    base = int(np.random.SeedSequence([seed, eps_index]).generate_state(1)[0])
    return (base + rows.long() * 1_000_003) % (2**62)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int, device: torch.device) -> tuple[Tensor, int]:
    """The model's clean predictions (on the CPU) and its number of classes."""
    with frozen(model):
        logits = [model(x[s:s + batch_size].to(device)).float() for s in range(0, len(x), batch_size)]
    if logits[0].ndim != 2 or logits[0].shape[1] < 2:
        raise TypeError(f"model must return logits of shape (N, num_classes >= 2); got {tuple(logits[0].shape)}")
    return torch.cat(logits).argmax(1).cpu(), logits[0].shape[1]



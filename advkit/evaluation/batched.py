"""Batched attack and prediction passes shared by the curves and the sanity checks."""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks.generate import batch_seed
from ..core import frozen
from .results import Cost


def attack_at(attack: Any, x: Tensor, y: Tensor, todo: Tensor, eps: float, batch_size: int, device: torch.device,
              seed: int, j: int = 0, starts: Tensor | None = None) -> tuple[Tensor, Tensor, Cost]:
    """Attack rows ``todo`` of ``x`` at ``eps`` (the ``j``-th point of a grid) in batches, each row
    from its row of ``starts`` when given (a warm start). Returns, in ``todo``'s order, which rows
    were fooled and where each ended (on the CPU), and what it cost."""
    fooled, ends = [], []
    cost = Cost(attacked=len(todo))
    t0 = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        warm = {} if starts is None else {"x_init": starts[idx].to(device)}
        res = attack.run(x[idx].to(device), y[idx].to(device), eps=eps, seed=sample_seeds(seed, j, idx), **warm)
        fooled.append(res.success.cpu())
        ends.append(res.x_adv.detach().cpu())
        cost.forwards, cost.backwards = cost.forwards + res.forwards, cost.backwards + res.backwards
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cost.seconds = time.perf_counter() - t0
    if not fooled:
        return torch.zeros(0, dtype=torch.bool), x[:0].clone(), cost
    return torch.cat(fooled), torch.cat(ends), cost


def sample_seeds(seed: int, eps_index: int, rows: Tensor) -> Tensor:
    """One reproducible seed per (eps, sample): a sample gets the same random start whether it is
    attacked with everyone or among the survivors, so survivors-only is never above full."""
    return (batch_seed(seed, eps_index) + rows.long() * 1_000_003) % (2**62)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int, device: torch.device) -> tuple[Tensor, int]:
    """The model's clean predictions (on the CPU) and its number of classes."""
    with frozen(model):
        logits = [model(x[s:s + batch_size].to(device)).float() for s in range(0, len(x), batch_size)]
    if logits[0].ndim != 2 or logits[0].shape[1] < 2:
        raise TypeError(f"model must return logits of shape (N, num_classes >= 2); got {tuple(logits[0].shape)}")
    return torch.cat(logits).argmax(1).cpu(), logits[0].shape[1]



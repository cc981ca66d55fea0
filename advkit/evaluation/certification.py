"""How ``evaluate`` measures a smoothed classifier (:mod:`advkit.evaluation.smoothed` describes it): CERTIFY on
every sample, and the evaluation's attacks on the noisy model judged by PREDICT."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import gather_call
from ..rng import RunRNG, derived_seed
from ..smoothing import ABSTAIN, certify, predict_smoothed
from .batched import BatchSize, Reader, attack_at
from .sharding import my_batches
from .smoothed import SmoothedResult, SmoothingOptions

#: The key of the seed of the noise the attacks' noisy model draws (:func:`advkit.rng.derived_seed`).
NOISE = 1


def smoothed_result(model: nn.Module, data: Any, read: Reader, attacks: dict[str, Any], radii: list[float],
                    batches: BatchSize, device: torch.device, seed: int, smoothing: SmoothingOptions,
                    amp: bool = False) -> SmoothedResult:
    """The smoothed classifier of ``model`` certified and attacked on every sample of ``data`` (a
    :class:`~advkit.data.Samples`, read a batch at a time): ``attacks`` run on the noisy model, L2, with EOT;
    with ``amp`` the counting forwards run under bf16 autocast on CUDA.
    A batch's draws are seeded by its first sample's index, so in a torchrun group each rank takes its
    share of the batches (:func:`~advkit.evaluation.sharding.my_batches`) and every rank gets the
    one-process result."""
    s, grid = smoothing, torch.tensor(radii)
    attacks = attacks if s.empirical else {}

    def mine() -> list[tuple[Tensor, ...]]:
        rows = []  # per batch: radius, certified and, with attacks, the empirical side
        for first, xb, yb in data.batches(batches.start, *my_batches(data.n, batches.start)):
            xb, yb = read.prepare(xb, yb)
            cert = certify(model, xb, s.sigma, s.n0, s.n, s.alpha, s.batch_size, seed=derived_seed(seed, first),
                           device=device, progress=False, amp=amp)
            right, radius = cert.prediction.cpu() == yb, cert.radius.cpu()
            row = (radius.where(right, torch.zeros(())), right[:, None] & (radius[:, None] >= grid[None]))
            if attacks:  # the noisy model draws from torch's global RNG: seeded per batch, the caller's restored
                with RunRNG(derived_seed(seed, first, NOISE)).active():
                    row += attacked(model, xb, yb, first, attacks, radii, batches, device, seed, s, amp)
            rows.append(row)
        return rows

    columns = list(zip(*(row for part in gather_call(mine) for row in part), strict=True))
    radius, certified, *side = (torch.cat(column) for column in columns)
    steps = sum(r > 0 for r in radii)
    return SmoothedResult(s, list(radii), radius, certified, side[0] if attacks else None,
                          side[1] if attacks else None, list(attacks), 1 + steps * len(attacks) if attacks else 0)


def attacked(model: nn.Module, x: Tensor, y: Tensor, first: int, attacks: dict[str, Any], radii: list[float],
             batches: BatchSize, device: torch.device, seed: int, s: SmoothingOptions,
             amp: bool = False) -> tuple[Tensor, Tensor]:
    """One batch's empirical side: per sample and radius, whether PREDICT named the label on the clean image
    and on every point the attacks found within the radius (each attack, in order, on the samples still
    standing; radii upward), and whether it named another class on one of them."""
    def predict(points: Tensor, *key: int) -> Tensor:
        return predict_smoothed(model, points, s.sigma, s.predict_n, s.alpha, s.batch_size,
                                seed=derived_seed(seed, first, *key), device=device, progress=False, amp=amp).cpu()

    answer = predict(x, 0)
    alive, wrong = answer == y, (answer != y) & (answer != ABSTAIN)
    stood = torch.zeros(len(x), len(radii), dtype=torch.bool)
    refuted = torch.zeros_like(stood)
    index = torch.arange(first, first + len(x))
    for j, r in enumerate(radii):
        for k, attack in enumerate(attacks.values() if r > 0 else ()):
            todo = alive.nonzero().squeeze(1)
            if not len(todo):
                break
            _, ends, _ = attack_at(attack, x, y, todo, r, batches, device, seed, j, index=index)
            answer = predict(ends, j + 1, k)
            alive[todo] = answer == y[todo]
            wrong[todo] |= (answer != y[todo]) & (answer != ABSTAIN)
        stood[:, j], refuted[:, j] = alive, wrong
    return stood, refuted

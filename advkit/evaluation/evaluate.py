"""``advkit.evaluate``: accuracy versus perturbation size, attacking only what is left to attack.

A perturbation that fools the model at eps1 stays valid at every eps2 > eps1 (the ball only
grows), and a sample the model gets wrong needs no attack. So each attack walks the eps grid
upward and, at each eps, attacks only the samples that survived the previous one; the curve is
non-increasing by construction and costs a fraction of re-attacking everything at every eps
(what foolbox and torchattacks users do). ``survivors=False`` does the latter, for comparison.

The walk is also one search rather than several: an attack that starts from a point (PGD, APGD)
starts each sample at the next eps where its attack at the previous eps ended (the result it
returned: PGD's last iterate, APGD's best), which lies inside the larger ball (``warm_start``).
Fooling then takes a few steps instead of a fresh search, and measured on a standard MNIST CNN
the search is stronger than a random restart (benchmarks/evaluate.py). Both modes
warm-start, and a sample's start and seed never depend on the others, so survivors-only equals
attacking everyone for these attacks (and is never above it for any attack).
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attacks.checks import check_choice, check_eps, check_images, check_labels
from ..attacks.generate import model_device
from ..core import frozen
from ..data import as_tensors
from ..train import default_device
from .batched import attack_at, predict
from .checks import run_checks
from .construct import describe
from .report import Report, run_metadata
from .results import AttackRecord, Cost, Example, ModelResult
from .specs import AttackSpec, check_norm, resolve

log = logging.getLogger(__name__)

NORMS = ("linf", "l2")


def evaluate(
    model: nn.Module | Mapping[str, nn.Module],
    data: Any,
    attacks: Sequence[Any] | Mapping[str, Any] = ("fgsm", "pgd"),
    eps: Sequence[float] = (0.0, 0.1, 0.2, 0.3),
    norm: str = "linf",
    n: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    survivors: bool = True,
    warm_start: bool = True,
    checks: bool = True,
    probe: int = 100,
    queries: int = 500,
    examples: int = 8,
) -> Report:
    """Robust accuracy of ``model`` on ``data`` under each attack at each eps, plus the per-sample
    worst case over attacks, sanity checks and a few examples, as a :class:`Report`.

    ``model``: a classifier returning logits on [0, 1] inputs, or a dict name -> model (one report,
    one plot). ``data``: a Dataset, a DataLoader or an ``(x, y)`` pair; ``n`` keeps the first n
    samples. ``attacks``: names (see :func:`advkit.evaluation.specs.valid_names`), attack objects
    (ours or torchattacks'), or factories ``model -> attack``; a dict names them. ``eps`` may
    include 0 (clean accuracy); it is sorted. ``device``: where to compute (default CUDA when
    available); the models are moved there and back. ``survivors=False`` attacks every sample at
    every eps; ``warm_start=False`` starts every attack afresh (a random point) at every eps.
    ``probe`` samples feed the sanity checks (``checks=False`` skips them; ``queries``
    is the budget of their gradient-free attack) and
    ``examples`` samples the report's picture grid. Same seed on the CPU, same numbers.
    """
    models = _models(model)
    norm = check_choice(norm, NORMS, "norm")
    grid = _grid(eps, norm)
    specs = resolve(attacks)
    if batch_size < 1 or (n is not None and n < 1) or probe < 0 or examples < 0:
        raise ValueError(f"batch_size and n must be >= 1, probe and examples >= 0; got {batch_size}, {n}, {probe}, {examples}")
    x, y = as_tensors(data, limit=n)
    x = check_images(x, "data images")
    y = check_labels(y, len(x), torch.device("cpu"), "data labels")
    device = default_device(device)
    start = time.perf_counter()
    results = []
    for name, net in models.items():
        with placed(net, device):
            results.append(evaluate_model(name, net, specs, x, y, grid, norm=norm, batch_size=batch_size, seed=seed,
                                          device=device, survivors=survivors, warm_start=warm_start, checks=checks, probe=probe,
                                          queries=queries, examples=examples, progress=progress))
    config = {"attacks": [s.name for s in specs], "eps": grid, "norm": norm, "n": len(x), "batch_size": batch_size,
              "seed": seed, "survivors": survivors, "warm_start": warm_start, "probe": probe, "queries": queries}
    return Report(results, config, run_metadata(device, time.perf_counter() - start))


def evaluate_model(name: str, model: nn.Module, specs: list[AttackSpec], x: Tensor, y: Tensor, eps: list[float], *,
                   norm: str, batch_size: int, seed: int, device: torch.device, survivors: bool = True,
                   warm_start: bool = True, checks: bool = True, probe: int = 100, queries: int = 500, examples: int = 8,
                   progress: bool = True) -> ModelResult:
    """One model's curves, checks and examples (``model`` already on ``device``)."""
    t0 = time.perf_counter()
    clean_pred, num_classes = predict(model, x, batch_size, device)
    clean = clean_pred == y
    shown = pick_examples(y, clean, examples)
    seconds = {"clean": time.perf_counter() - t0}
    built = {spec.name: check_norm(spec.name, spec.build(model, norm, num_classes), norm) for spec in specs}
    records, adversarials = {}, {}
    bar = tqdm(total=len(specs) * sum(e > 0 for e in eps), desc=f"evaluate {name}", disable=not progress, leave=False)
    for attack_name, attack in built.items():
        t0 = time.perf_counter()
        records[attack_name], adversarials[attack_name] = attack_curve(
            attack, attack_name, x, y, clean, eps, batch_size=batch_size, seed=seed, device=device,
            survivors=survivors, warm_start=warm_start, shown=shown, bar=bar)
        seconds[attack_name] = time.perf_counter() - t0
    bar.close()
    result = ModelResult(name, eps, y, clean, num_classes, records, seconds=seconds)
    result.examples = collect_examples(model, x, y, clean_pred, shown, adversarials, device)
    if checks:
        t0 = time.perf_counter()
        result.checks = run_checks(result, model, built, x, y, norm=norm, seed=seed, probe=probe,
                                   batch_size=batch_size, device=device, queries=queries)
        seconds["checks"] = time.perf_counter() - t0
    for row in zip(eps, *(result.accuracy(a) for a in result.names)):
        log.info("%s eps=%g: %s", name, row[0], ", ".join(f"{a} {acc:.3f}" for a, acc in zip(result.names, row[1:])))
    return result


def attack_curve(attack: Any, name: str, x: Tensor, y: Tensor, clean: Tensor, eps: list[float], *, batch_size: int,
                 seed: int, device: torch.device, survivors: bool = True, warm_start: bool = True,
                 shown: Sequence[int] = (), bar: tqdm | None = None
                 ) -> tuple[AttackRecord, dict[int, tuple[Tensor, float, bool]]]:
    """Walk the eps grid upward with ``attack``. Survivors mode attacks, at each eps, only the
    samples still standing; otherwise every sample at every eps. With ``warm_start`` (and an
    attack that ``warm_starts``) each sample starts where its attack at the previous eps ended.
    Returns the record and, for the ``shown`` samples, ``index -> (x_adv, eps, fooled)`` from the
    first eps that fooled them (or the last eps tried)."""
    robust = torch.zeros(len(x), len(eps), dtype=torch.bool)
    alive, costs, kept = clean.clone(), [], {}
    reached = x.clone() if warm_start and getattr(attack, "warm_starts", False) else None  # where each search ended
    starts = None  # no warm start before the first attacked eps
    for j, e in enumerate(eps):
        if e == 0:
            robust[:, j], cost = clean, Cost()
        else:
            todo = alive.nonzero().squeeze(1) if survivors else torch.arange(len(x))
            fooled, ends, cost = attack_at(attack, x, y, todo, e, batch_size, device, seed, j, starts=starts)
            robust[:, j] = alive if survivors else clean
            robust[todo[fooled], j] = False
            keep_examples(kept, shown, todo, fooled, ends, e, last=j == len(eps) - 1)
            if reached is not None:
                reached[todo] = ends
                starts = reached
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{name} eps={e:g} acc={float(robust[:, j].float().mean()):.3f}")
        costs.append(cost)
        alive = robust[:, j]
    return AttackRecord(name, describe(attack), robust, costs), kept


def keep_examples(kept: dict[int, tuple[Tensor, float, bool]], shown: Sequence[int], todo: Tensor, fooled: Tensor,
                  ends: Tensor, eps: float, last: bool) -> None:
    """For the shown samples among ``todo`` (attacked at ``eps``; ``fooled`` and ``ends`` in its
    order): keep ``(x_adv, eps, fooled)`` the first time one is fooled, or at the ``last`` eps."""
    position = {i: k for k, i in enumerate(todo.tolist())}
    for i in shown:
        k = position.get(i)
        if k is not None and (fooled[k] or last) and not kept.get(i, (None, 0.0, False))[2]:
            kept[i] = (ends[k].clone(), eps, bool(fooled[k]))


def pick_examples(y: Tensor, clean: Tensor, k: int) -> list[int]:
    """Up to ``k`` correctly classified samples, one per class first (in class order), then the next ones."""
    correct = clean.nonzero().squeeze(1).tolist()
    firsts = sorted({int(y[i]): i for i in reversed(correct)}.values(), key=lambda i: int(y[i]))
    chosen = set(firsts)
    rest = [i for i in correct if i not in chosen]
    return (firsts + rest)[:k]


@torch.no_grad()
def collect_examples(model: nn.Module, x: Tensor, y: Tensor, clean_pred: Tensor, shown: list[int],
                     adversarials: dict[str, dict[int, tuple[Tensor, float, bool]]], device: torch.device) -> list[Example]:
    """For each shown sample, the adversarial image from the smallest fooling eps over attacks
    (ties: the first attack), with the model's prediction on it."""
    out = []
    for i in shown:
        ex = Example(i, int(y[i]), int(clean_pred[i]), x[i].clone())
        candidates = [(name, *kept[i]) for name, kept in adversarials.items() if i in kept]
        if candidates:
            ex.attack, ex.x_adv, ex.eps, ex.fooled = min(candidates, key=lambda c: (not c[3], c[2] if c[3] else -c[2]))
            with frozen(model):
                ex.adv_pred = int(model(ex.x_adv[None].to(device)).argmax(1))
        out.append(ex)
    return out


def _models(model: Any) -> dict[str, nn.Module]:
    models = dict(model) if isinstance(model, Mapping) else {"model": model}
    if not models:
        raise ValueError("model: the dict of models is empty")
    for name, net in models.items():
        if not isinstance(net, nn.Module):
            raise TypeError(f"model {name!r} must be a torch.nn.Module, got {type(net).__name__}")
    return models


def _grid(eps: Any, norm: str) -> list[float]:
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        eps = [eps]
    if not isinstance(eps, Sequence) or not eps:
        raise ValueError(f"eps must be a non-empty list of budgets, got {eps!r}")
    return sorted({check_eps(e, norm=norm) for e in eps})


@contextmanager
def placed(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Move ``model`` to ``device`` for the block and back to where it was afterwards."""
    home = model_device(model)
    model.to(device)
    try:
        yield
    finally:
        model.to(home)

"""HopSkipJump (Chen, Jordan & Wainwright, IEEE S&P 2020, "HopSkipJumpAttack: a query-efficient
decision-based attack"): the smallest perturbation that flips the decision, found from the model's
top-1 answers alone.

From a random adversarial start pulled back to the decision boundary by a binary search towards
``x``, each iteration estimates the boundary's normal at the boundary point from the answers at
random points around it (Monte Carlo, a baseline subtracted), steps along it with a geometrically
shrinking step until the answer is adversarial again, and binary-searches back towards ``x``. Every
sample runs its own search, in lockstep with the others: a batch is a set of independent searches.

The attack sees the model only through :class:`TopOne`, which hands it the predicted class and
nothing else, and every model call on a sample counts against its budget of ``queries``, the clean
call included.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..core import Norm, check_number
from .base import Attack, AttackRun

#: Directions drawn per chunk of a gradient estimate (bounds the memory of one estimate).
CHUNK = 256
#: Rows per model call on the CPU, where small batches run faster per row (measured 2.4x on a
#: SmallCNN: 64 rows against 2,560); on an accelerator the rows of one request go in one call.
CPU_ROWS = 64
#: Halvings of the step size an iteration's reserve allows for (the first trial mostly succeeds).
STEP_RESERVE = 3


class TopOne:
    """The model as a label-only oracle: the predicted class of each row, counted as one query of
    the sample the row belongs to (``owners``), and nothing else of the logits. It keeps each
    sample's closest adversarial point asked about (``best``, at distance ``best_dist`` in ``norm``)."""

    def __init__(self, run: AttackRun, budget: int, norm: Norm):
        self._run, self.budget, self.norm = run, budget, norm
        self.used = torch.ones(len(run.x), dtype=torch.long, device=run.x.device)  # the clean call
        self.best = run.x.clone()
        self.best_dist = torch.full((len(run.x),), math.inf, device=run.x.device)

    def room(self) -> Tensor:
        """Queries each sample has left."""
        return self.budget - self.used

    @torch.no_grad()
    def __call__(self, points: Tensor, owners: Tensor) -> Tensor:
        """Whether each row of ``points`` is adversarial for its sample ``owners[row]``."""
        if len(points) == 0:
            return torch.zeros(0, dtype=torch.bool, device=points.device)
        size = CPU_ROWS if points.device.type == "cpu" else len(points)
        top = torch.cat([self._run.logits(part).argmax(1) for part in points.split(size)])
        self.used.index_add_(0, owners, torch.ones_like(owners))
        labels = self._run.labels[owners]
        hit = top == labels if self._run.targeted else top != labels
        self._keep(points[hit], owners[hit])
        return hit

    def _keep(self, points: Tensor, owners: Tensor) -> None:
        """Record adversarial ``points`` closer to their samples than the best so far."""
        if len(points) == 0:
            return
        dist = self.norm.distance(points - self._run.x[owners])
        closest = torch.full_like(self.best_dist, math.inf).scatter_reduce(0, owners, dist, "amin")
        # one row per improved sample: the first of its closest points (the lowest row index)
        rows = torch.arange(len(owners), device=owners.device)
        at_closest = dist == closest[owners]
        first = torch.full((len(self.best_dist),), len(owners), dtype=torch.long, device=owners.device).scatter_reduce(
            0, owners[at_closest], rows[at_closest], "amin")
        better = (closest < self.best_dist).nonzero().squeeze(1)
        self.best[better], self.best_dist[better] = points[first[better]], dist[first[better]]


def _expand(t: Tensor, like: Tensor) -> Tensor:
    """A per-sample (N,) tensor shaped to broadcast against ``like`` (N, ...)."""
    return t.view(-1, *([1] * (like.ndim - 1)))


class HopSkipJump(Attack):
    """HopSkipJump in L2 or L-inf, from top-1 answers alone, at most ``queries`` model calls per
    sample (the clean one included). ``eps=None`` (the default) is unbounded: each sample's result
    is the smallest adversarial example found; a finite ``eps`` counts a sample as fooled only when
    that smallest perturbation lies within it (else x is returned).

    ``init_size`` random uniform images are tried per sample to start from; ``init_evals`` answers
    make the first boundary estimate, ``init_evals * sqrt(t)`` the t-th (at most ``max_evals``);
    ``gamma`` sets the binary search's tolerance and the estimate's probe radius (the paper's theta);
    its default, ``0.01 d`` for inputs of ``d`` entries, is ART's (the paper's 1 bisects far finer than
    an iteration gains, for about three answers more per bisection; the medians are measured in
    benchmarks/README.md). An iteration that the budget would cut short estimates from fewer answers,
    keeping enough for its step (the paper's loop would spend them on an estimate it never uses).
    """

    norms = ("l2", "linf")
    losses = ("margin",)  # none is climbed: success is the decision alone
    targets = ("given", "random")  # least-likely would read the logits beyond the top-1
    uses_gradients = False
    label_only = True
    minimum_norm = True
    per_sample = True
    settings = ("queries", "init_evals", "max_evals", "init_size", "gamma")

    def __init__(self, model: nn.Module, eps: float | None = None, queries: int = 1000, *, norm: str = "l2",
                 init_evals: int = 100, max_evals: int = 10000, init_size: int = 100, gamma: float | None = None,
                 loss: str = "margin", **kwargs):
        """HopSkipJump (Chen et al. 2020), decision-based: only the model's top-1 answers are read.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]; only their argmax is read).
            eps: None (unbounded: the smallest perturbation found) or a budget a success must lie within.
            queries: the most model calls per sample, the clean one included (>= 2).
            norm: ``"l2"`` or ``"linf"``.
            init_evals: answers for the first estimate of the boundary's normal.
            max_evals: the most answers for one estimate.
            init_size: random images tried per sample to find an adversarial start.
            gamma: the tolerance constant (the binary search stops within ``gamma / d^1.5`` under L2,
                ``gamma / d^2`` under L-inf, ``d`` the input size); None (the default): ``0.01 d``, ART's
                ``0.01 / sqrt(d)`` under L2 and ``0.01 / d`` under L-inf.
            loss: ``"margin"`` (recorded only: the attack climbs no loss).
            **kwargs: ``targeted`` (False or ``"random"``), ``early_stop``, ``seed``, ``amp``: see
                :class:`~advkit.attacks.base.Attack`.
        """
        super().__init__(model, eps, norm=norm, loss=loss, **kwargs)
        self.queries = check_number(queries, "queries", low=2, low_open=False, integer=True)
        self.init_evals = check_number(init_evals, "init_evals", low=1, low_open=False, integer=True)
        self.max_evals = check_number(max_evals, "max_evals", low=1, low_open=False, integer=True)
        self.init_size = check_number(init_size, "init_size", low=1, low_open=False, integer=True)
        self.gamma = None if gamma is None else check_number(gamma, "gamma")

    def perturb(self, run: AttackRun) -> None:
        run.forward_clean()
        # a finite L2 ball's final projection may move a result by float rounding, and the base class then
        # re-asks the model once: that call is kept out of the search's budget
        oracle = TopOne(run, self.queries - (self.norm == "l2" and math.isfinite(run.eps)), self.geometry)
        x = run.x
        dim = x[0].numel()
        theta = self._tolerance(dim)
        live = ~run.success
        boundary, found = self._start(run, oracle, live, theta)
        live &= found
        dist = self._distance(boundary, x)
        t = 0
        while bool(live.any()):
            t += 1
            idx = live.nonzero().squeeze(1)
            delta = (torch.full_like(dist[idx], 0.1) if t == 1 else
                     (math.sqrt(dim) if self.norm == "l2" else dim) * theta * dist[idx])
            evals = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            # an estimate the budget cuts short leaves nothing for its step: keep enough for one
            quota = (oracle.room()[idx] - self._reserve(theta)).clamp(1, evals)
            grad = self._estimate(run, oracle, idx, boundary[idx], delta, evals, quota)
            update = grad if self.norm == "l2" else grad.sign()
            step = self._step(oracle, idx, boundary[idx], update, dist[idx] / math.sqrt(t))
            boundary[idx] = self._bisect(oracle, idx, x[idx], step, theta)
            dist[idx] = self._distance(boundary[idx], x[idx])
            live &= oracle.room() > 0
        keep = oracle.best_dist <= run.eps
        run.best[keep] = oracle.best[keep]
        run.success |= keep

    def _distance(self, a: Tensor, b: Tensor) -> Tensor:
        return self.geometry.distance(a - b)

    def _tolerance(self, dim: int) -> float:
        """The paper's theta for inputs of ``dim`` entries."""
        gamma = 0.01 * dim if self.gamma is None else self.gamma
        return gamma / (dim ** 1.5 if self.norm == "l2" else dim ** 2)

    def _reserve(self, theta: float) -> int:
        """Answers an iteration keeps back from its estimate for its step: a bisection (L2: on the
        blend, to ``theta``; L-inf: on a radius at most 1, to at least ``theta`` of it) and a few halvings."""
        return math.ceil(math.log2(1 / theta)) + STEP_RESERVE

    def _start(self, run: AttackRun, oracle: TopOne, live: Tensor, theta: float) -> tuple[Tensor, Tensor]:
        """A boundary point per live sample: the first of ``init_size`` uniform random images that is
        adversarial, binary-searched towards x. Returns the points and which samples have one."""
        tries = run.draw((self.init_size, *run.x.shape[1:]), lambda t, g: t.uniform_(0, 1, generator=g))
        start, found = run.x.clone(), torch.zeros_like(live)
        for k in range(self.init_size):
            idx = (live & ~found & (oracle.room() > 0)).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            hit = oracle(tries[idx, k], idx)
            start[idx[hit]], found[idx[hit]] = tries[idx[hit], k], True
        idx = found.nonzero().squeeze(1)
        start[idx] = self._bisect(oracle, idx, run.x[idx], start[idx], theta)
        return start, found

    def _estimate(self, run: AttackRun, oracle: TopOne, idx: Tensor, at: Tensor, delta: Tensor, evals: int,
                  quota: Tensor) -> Tensor:
        """The boundary's unit normal (pointing to the adversarial side) at ``at`` (rows ``idx``), from
        the answers at ``at + delta * u`` for the first ``quota`` (per sample) of ``evals`` random unit
        directions ``u`` (fewer where its budget runs out), a baseline subtracted (the paper's variance
        reduction). Every sample draws all ``evals``, so its draws do not depend on the batch."""
        shape = at.shape[1:]
        total = torch.zeros_like(at)
        votes = torch.zeros(len(idx), device=at.device)
        counts = torch.zeros(len(idx), device=at.device)
        signed = []
        for first in range(0, evals, CHUNK):
            n = min(CHUNK, evals - first)
            fill = (lambda t, g: t.normal_(generator=g)) if self.norm == "l2" else \
                (lambda t, g: t.uniform_(-1, 1, generator=g))
            u = run.draw((n, *shape), fill)[idx]  # every sample draws, so a sample's draws ignore the batch
            u = u / u.flatten(2).norm(dim=2).view(len(idx), n, *([1] * len(shape)))
            probe = (at[:, None] + delta.view(-1, 1, *([1] * len(shape))) * u).clamp(0, 1)
            u = (probe - at[:, None]) / delta.view(-1, 1, *([1] * len(shape)))
            allowed = first + torch.arange(n, device=at.device)[None, :] < quota[:, None].minimum(
                first + oracle.room()[idx, None])
            rows, cols = allowed.nonzero(as_tuple=True)
            answer = oracle(probe[rows, cols], idx[rows]).to(at.dtype) * 2 - 1
            signed.append((rows, cols, u, answer))
            votes.index_add_(0, rows, answer)
            counts.index_add_(0, rows, torch.ones_like(answer))
        mean = votes / counts.clamp_min(1)
        unanimous = mean.abs() == 1
        for rows, cols, u, answer in signed:
            weight = torch.where(unanimous[rows], answer, answer - mean[rows])
            total.index_add_(0, rows, weight.view(-1, *([1] * len(shape))) * u[rows, cols])
        norm = total.flatten(1).norm(dim=1).clamp_min(1e-12)
        return total / _expand(norm, total)

    def _step(self, oracle: TopOne, idx: Tensor, at: Tensor, update: Tensor, size: Tensor) -> Tensor:
        """From ``at`` along ``update``, halving each sample's step ``size`` until its answer is
        adversarial (or its budget runs out: then it stays at ``at``, adversarial already)."""
        out = at.clone()
        todo = torch.ones(len(idx), dtype=torch.bool, device=at.device)
        while True:
            todo &= oracle.room()[idx] > 0
            rows = todo.nonzero().squeeze(1)
            if len(rows) == 0:
                return out
            trial = (at[rows] + _expand(size[rows], at[rows]) * update[rows]).clamp(0, 1)
            hit = oracle(trial, idx[rows])
            out[rows[hit]] = trial[hit]
            todo[rows[hit]] = False
            size[rows[~hit]] /= 2

    def _bisect(self, oracle: TopOne, idx: Tensor, x: Tensor, adv: Tensor, theta: float) -> Tensor:
        """The point between ``x`` (not adversarial) and ``adv`` (adversarial) closest to ``x`` that
        is known adversarial, within a tolerance: under L2 on the segment (blend ``theta``), under L-inf
        ``adv`` clipped to the L-inf ball around x (radius within ``theta`` times the start's)."""
        if self.norm == "l2":
            low, high = torch.zeros(len(idx), device=x.device), torch.ones(len(idx), device=x.device)
            tol = torch.full_like(low, theta)
        else:
            low, high = torch.zeros(len(idx), device=x.device), self._distance(adv, x)
            tol = torch.clamp(high * theta, max=theta)

        def at(r: Tensor, rows: Tensor) -> Tensor:
            if self.norm == "l2":
                return (1 - _expand(r, x[rows])) * x[rows] + _expand(r, x[rows]) * adv[rows]
            return torch.minimum(torch.maximum(adv[rows], x[rows] - _expand(r, x[rows])), x[rows] + _expand(r, x[rows]))

        while True:
            rows = ((high - low > tol) & (oracle.room()[idx] > 0)).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            mid = (low[rows] + high[rows]) / 2
            hit = oracle(at(mid, rows), idx[rows])
            high[rows] = torch.where(hit, mid, high[rows])
            low[rows] = torch.where(hit, low[rows], mid)
        return at(high, torch.arange(len(idx), device=x.device))

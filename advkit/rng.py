"""A training run's own stream of torch's global RNG, kept apart from the caller's.

Some randomness of a training loop cannot be given a ``torch.Generator``: dropout inside the user's
model, torchattacks' draws, anything that calls ``torch.rand`` itself. It draws from torch's global
RNG. A :class:`RunRNG` makes that RNG the run's for the duration of :meth:`RunRNG.active` (seeded
with the run's seed the first time, then continuing where the run left it) and gives the caller's
global RNG back afterwards exactly as it was (state restored, nothing drawn from it), whatever
happens in the block. Its state is what a checkpoint records under ``"torch_rng"`` (and
``"cuda_rng"`` when CUDA is in use), so a resumed run continues the very stream.

The one home of advkit's seed derivations, too: a part of a run (a batch, an epoch, a training step, a
sample) gets its seed from :func:`derived_seed`, :func:`batch_seed`, :func:`epoch_seed` or
:func:`sample_seeds`, and per-sample random draws come from :func:`sample_draw`, so that the same
seeds give the same numbers wherever they are used.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .core.norms import Draw

#: Spreads seeds that are derived by addition apart: epoch e of seed s is ``s * SEED_STRIDE + e``, sample i
#: of a step seeded b is ``b + i * SEED_STRIDE``.
SEED_STRIDE = 1_000_003


def derived_seed(seed: int, *key: int) -> int:
    """A reproducible seed for the use ``key`` (integers: a purpose, a step, a rank...) of ``seed``, mixed by
    numpy's ``SeedSequence``, so neighbouring seeds or keys give unrelated seeds."""
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


def batch_seed(seed: int, batch: int) -> int:
    """The seed of batch ``batch`` of a run seeded ``seed`` (:func:`derived_seed` of the pair, so batch 1 of
    seed 0 and batch 0 of seed 1 do not share random starts)."""
    return derived_seed(seed, batch)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle in a run seeded ``seed``: ``seed * SEED_STRIDE + epoch``."""
    return seed * SEED_STRIDE + epoch


def sample_seeds(base: int, index: Tensor) -> Tensor:
    """One seed per sample (``index``: their numbers in the whole data) under the seed ``base`` of a step or
    an eps: a sample's draws depend on ``base`` and on itself, not on the batch or the rank it lands in."""
    return (base + index.long() * SEED_STRIDE) % (2**62)


def sample_draw(x: Tensor, seeds: Tensor) -> Draw:
    """A :data:`advkit.core.norms.Draw` filling row i (one per sample of ``x``) from a generator seeded
    ``seeds[i]``, so a row's values do not depend on the other rows; successive draws continue each
    row's generator."""
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]

    def draw(shape: tuple[int, ...], fill: Callable[[Tensor, torch.Generator], Tensor]) -> Tensor:
        rows = [fill(torch.empty(shape, dtype=x.dtype), g) for g in generators]
        return (torch.stack(rows) if rows else torch.empty((0, *shape), dtype=x.dtype)).to(x.device)

    return draw


def _cuda_in_use() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def global_state() -> dict[str, Any]:
    """torch's global RNG state now: ``"torch_rng"`` (CPU) and, once CUDA is initialised, ``"cuda_rng"``."""
    state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    if _cuda_in_use():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def set_global_state(state: dict[str, Any]) -> None:
    """Make torch's global RNG ``state`` (as :func:`global_state` returns it; a missing CUDA part is
    left alone)."""
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def _seed_global(seed: int) -> None:
    torch.random.default_generator.manual_seed(seed)
    if _cuda_in_use():
        torch.cuda.manual_seed_all(seed)


class RunRNG:
    """The global-RNG stream of one run, seeded with ``seed`` (the CPU generator, and the CUDA ones once
    CUDA is initialised, as :func:`torch.manual_seed` seeds them)."""

    def __init__(self, seed: int):
        self.seed = seed
        self._state: dict[str, Any] | None = None  # the run's stream between blocks; None: not started
        self._live = False

    @contextmanager
    def active(self) -> Iterator[None]:
        """Inside the block torch's global RNG is the run's stream; afterwards the caller's again, exactly
        as before the block (also after an exception). Blocks may nest (the inner one changes nothing)."""
        if self._live:
            yield
            return
        callers = global_state()
        try:
            if self._state is None:
                _seed_global(self.seed)
            else:
                set_global_state(self._state)
                if "cuda_rng" not in self._state and _cuda_in_use():  # a CPU run's state continued on a GPU
                    torch.cuda.manual_seed_all(self.seed)
            self._live = True
            yield
        finally:
            if self._live:
                self._state = global_state()
            self._live = False
            set_global_state(callers)

    def reseed(self, seed: int) -> None:
        """Inside :meth:`active`: restart the run's stream from ``seed`` (as :func:`torch.manual_seed` would,
        without touching CUDA generators that are not initialised yet)."""
        if not self._live:
            raise RuntimeError("RunRNG.reseed works inside its active() block only")
        _seed_global(seed)

    def state_dict(self) -> dict[str, Any]:
        """The run's stream now: the global RNG inside :meth:`active`, else where the run left it (or its
        seeded start)."""
        if self._live:
            return global_state()
        if self._state is None:
            return {"torch_rng": torch.Generator().manual_seed(self.seed).get_state()}
        return dict(self._state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream ``state`` (a :meth:`state_dict`, or a checkpoint holding its keys)."""
        own = {key: state[key] for key in ("torch_rng", "cuda_rng") if key in state}
        if self._live:
            set_global_state(own)
        else:
            self._state = own


__all__ = ["SEED_STRIDE", "RunRNG", "batch_seed", "derived_seed", "epoch_seed", "global_state", "sample_draw",
           "sample_seeds", "set_global_state"]

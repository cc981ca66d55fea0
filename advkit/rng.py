"""A training run's own stream of torch's global RNG, kept apart from the caller's.

Some randomness of a training loop cannot be given a ``torch.Generator``: dropout inside the user's
model, torchattacks' draws, anything that calls ``torch.rand`` itself. It draws from torch's global
RNG. A :class:`RunRNG` makes that RNG the run's for the duration of :meth:`RunRNG.active` (seeded
with the run's seed the first time, then continuing where the run left it) and gives the caller's
global RNG back afterwards exactly as it was (state restored, nothing drawn from it), whatever
happens in the block. Its state is what a checkpoint records under ``"torch_rng"`` (and
``"cuda_rng"`` when CUDA is in use), so a resumed run continues the very stream.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


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


__all__ = ["RunRNG", "global_state", "set_global_state"]

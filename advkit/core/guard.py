"""A divergence guard for training games: it stops (or skips) bad moves and rolls back to a good state."""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .game import Hook, Role
from .numbers import check_number

log = logging.getLogger(__name__)


class Stateful(Protocol):
    """Anything a checkpoint can hold: a module, an optimizer, a trainer."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], /) -> Any: ...


@dataclass(frozen=True)
class Limit:
    """A reading that must stay at or below ``high`` after every move of ``role`` (of both players when
    None). Crossing it is a divergence named ``"{reason} ({quantity} {value:.3g})"``."""

    reason: str
    quantity: str
    read: Callable[[], float]
    high: float
    role: Role | None = None

    def crossed(self, role: Role) -> str | None:
        """Why the move of ``role`` just made broke this limit, or None."""
        if self.role not in (None, role):
            return None
        value = self.read()
        return f"{self.reason} ({self.quantity} {value:.3g})" if value > self.high else None


def all_finite(modules: Sequence[nn.Module]) -> bool:
    """Whether every floating-point parameter and buffer of ``modules`` is finite."""
    tensors = (t for m in modules for t in (*m.parameters(), *m.buffers()) if t.is_floating_point())
    return all(torch.isfinite(t).all() for t in tensors)


class DivergenceGuard(Hook):
    """Ends the game when training diverges, and restores the last good state on :meth:`rollback`.

    A move diverges when its loss is not finite or when it breaks one of ``limits``: the move's
    ``inner_step``/``outer_step`` event then returns True (the game ends after it) and :attr:`reason`
    says why, e.g. ``"non-finite D loss"`` with ``roles={"inner": "D", "outer": "G"}``. With
    ``skip_nonfinite`` a non-finite loss instead skips that one move (``before_update`` returns True,
    :attr:`skipped` counts them) and the game goes on; limits still end it.

    ``state`` is what a rollback restores (anything with ``state_dict``/``load_state_dict``); its
    state at construction, at run step ``step``, is the first good snapshot and :meth:`remember`
    takes later ones, once every floating tensor of ``weights`` is finite. The caller, which knows
    the run's remedy (lower learning rates, say), calls :meth:`rollback` after a game the guard ended;
    after ``max_rollbacks`` rollbacks the next one gives up with a RuntimeError. Snapshots are deep
    copies held in memory.
    """

    def __init__(self, state: Stateful, weights: Sequence[nn.Module] = (), *, limits: Sequence[Limit] = (),
                 max_rollbacks: int = 5, skip_nonfinite: bool = False, step: int = 0,
                 roles: Mapping[Role, str] | None = None, name: str = "training"):
        self.max_rollbacks = check_number(max_rollbacks, "max_rollbacks", low_open=False, integer=True)
        self.state, self.weights, self.limits = state, list(weights), list(limits)
        self.skip_nonfinite, self.name = skip_nonfinite, name
        self.roles: Mapping[Role, str] = roles or {"inner": "inner", "outer": "outer"}
        self.reason: str | None = None
        self.rollbacks = self.skipped = 0
        self._good, self._good_step = copy.deepcopy(state.state_dict()), step

    def before_update(self, r: int, role: Role, loss: Tensor) -> bool:
        if self.skip_nonfinite and not math.isfinite(float(loss)):
            self.skipped += 1
            log.warning("%s: skipped the %s move of round %d (non-finite loss)", self.name, self.roles[role], r)
            return True
        return False

    def inner_step(self, r: int, i: int, loss: Tensor) -> bool:
        return self._check(loss, "inner")

    def outer_step(self, r: int, loss: Tensor) -> bool:
        return self._check(loss, "outer")

    def _check(self, loss: Tensor, role: Role) -> bool:
        if not self.skip_nonfinite and not math.isfinite(float(loss)):
            self.reason = f"non-finite {self.roles[role]} loss"
        else:
            self.reason = next((why for why in (limit.crossed(role) for limit in self.limits) if why), None)
        return self.reason is not None

    def remember(self, step: int) -> dict[str, Any] | None:
        """Take the state at run step ``step`` as the last good snapshot and return it (the guard's own
        copy: read it, don't change it). When a weight is not finite, keep the previous snapshot,
        set :attr:`reason` to ``"non-finite weights"`` and return None: the caller ends the game."""
        if not all_finite(self.weights):
            self.reason = "non-finite weights"
            return None
        self._good, self._good_step = copy.deepcopy(self.state.state_dict()), step
        return self._good

    def rollback(self, step: int) -> int:
        """Restore the last good snapshot after the game ended at run step ``step`` on :attr:`reason`
        (which is cleared); returns the snapshot's step. On the rollback past ``max_rollbacks``, a
        RuntimeError that names the reason, with the last good state restored all the same."""
        if self.reason is None:
            raise RuntimeError("rollback() follows a game the guard ended; it saw no divergence")
        reason, self.reason = self.reason, None
        self.rollbacks += 1
        self.state.load_state_dict(copy.deepcopy(self._good))
        if self.rollbacks > self.max_rollbacks:
            raise RuntimeError(f"{self.name} diverged {self.rollbacks} times ({reason}); gave up at step {step} "
                               f"and restored the last good state, step {self._good_step}")
        return self._good_step


__all__ = ["DivergenceGuard", "Limit", "Stateful", "all_finite"]

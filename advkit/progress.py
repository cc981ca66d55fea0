"""Progress bars: a tqdm bar as a core hook, and bars for long attacks (off with ``progress=False``)."""
from __future__ import annotations

from torch import Tensor
from tqdm.auto import tqdm

from .core import Hook

#: Seconds a long-work bar stays hidden: short calls (inside evaluate, tests) print nothing.
LONG_WORK_S = 5.0


def long_work_bar(total: int, desc: str, enabled: bool = True, unit: str = "it") -> tqdm:
    """A bar for work that may be long or short: it shows up only once the work has run for
    :data:`LONG_WORK_S` seconds, and disappears when done. Update it per outer iteration, not per step."""
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, delay=LONG_WORK_S, unit=unit)


class InnerStepBar(Hook):
    """Advances ``bar`` by ``every`` inner steps at a time (a hook for :func:`advkit.core.play`)."""

    def __init__(self, bar: tqdm, every: int = 10):
        self.bar, self.every, self.pending = bar, every, 0

    def inner_step(self, r: int, i: int, loss: Tensor) -> None:
        self.pending += 1
        if self.pending == self.every:
            self.flush()

    def flush(self) -> None:
        """Show the steps not yet shown (call after the game)."""
        self.bar.update(self.pending)
        self.pending = 0


class ProgressHook(Hook):
    """Advances a bar once per round and shows the outer player's latest loss every ``every`` rounds."""

    def __init__(self, total: int, desc: str, enabled: bool = True, every: int = 25):
        self.bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False)
        self.every = every
        self.loss: Tensor | None = None  # detached; read (a device sync) only when shown

    def outer_step(self, r: int, loss: Tensor) -> None:
        self.loss = loss

    def round_end(self, r: int) -> None:
        self.bar.update(1)
        if self.loss is not None and r % self.every == 0:
            self.bar.set_postfix(loss=f"{float(self.loss):.4f}")
        if self.bar.n >= self.bar.total:
            self.bar.close()

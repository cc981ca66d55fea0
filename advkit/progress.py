"""A tqdm progress bar as a core hook (off with ``progress=False``)."""
from __future__ import annotations

from torch import Tensor
from tqdm.auto import tqdm

from .core import Hook


class ProgressHook(Hook):
    """Advances a bar once per round; shows the latest recorded loss every ``every`` rounds."""

    def __init__(self, total: int, desc: str, enabled: bool = True, losses: list[Tensor] | None = None, every: int = 25):
        self.bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False)
        self.losses, self.every = losses, every

    def round_end(self, r: int) -> None:
        self.bar.update(1)
        if self.losses and r % self.every == 0:
            self.bar.set_postfix(loss=f"{float(self.losses[-1]):.4f}")
        if self.bar.n >= self.bar.total:
            self.bar.close()

"""How a model holds up under the corruptions: per-sample correctness at each severity, batched on a device."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..core import frozen
from ..rng import batch_seed
from .corruptions import SEVERITIES
from .suites import CorruptionSuite, OwnCorruptions

__all__ = ["corruption_accuracy"]


@torch.no_grad()
def corruption_accuracy(model: nn.Module, x: Tensor, y: Tensor, names: Sequence[str], *, batch_size: int = 256,
                        device: torch.device | str = "cpu", seed: int = 0,
                        severities: Sequence[int] = SEVERITIES, first_batch: int = 0,
                        suite: CorruptionSuite | None = None) -> dict[str, Tensor]:
    """For each corruption in ``names``, an ``(n, len(severities))`` bool tensor on the CPU: whether
    ``model`` (in eval mode, restored after) classifies sample i of ``x`` correctly at severity j.

    Batch k (rows ``k * batch_size`` onward) is moved to ``device`` and corrupted there with
    ``suite.apply(batch, name, severity, seed=batch_seed(seed, first_batch + k), index=...)``
    (:func:`advkit.rng.batch_seed`; ``index``: the rows' indices in the whole data, which the files
    suites read by), by default advkit's own corruptions (:func:`advkit.data.corruptions.corrupt`):
    the same arguments on the same device give the same result. ``first_batch``: the index of x's
    first batch in a larger run (its batches are seeded as batches ``first_batch`` onward there, and
    its rows start at ``first_batch * batch_size``). ``suite``: a
    :class:`~advkit.data.suites.CorruptionSuite` whose corruptions ``names`` are (None: advkit's own).
    """
    suite = OwnCorruptions() if suite is None else suite
    names = suite.check_names(names)
    out = {name: torch.zeros(len(x), len(severities), dtype=torch.bool) for name in names}
    with frozen(model):
        for k, start in enumerate(range(0, len(x), batch_size)):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            index = torch.arange(start, start + len(xb)) + first_batch * batch_size
            suite.check_labels(yb, index)
            seeded = batch_seed(seed, first_batch + k)
            for name in names:
                for j, severity in enumerate(severities):
                    pred = model(suite.apply(xb, name, severity, seed=seeded, index=index)).argmax(1)
                    out[name][start:start + len(xb), j] = (pred == yb).cpu()
    return out

"""SmallCNN's pooling: torch's NCHW ``nn.MaxPool2d(2)`` against advkit's ``MaxPool2x2`` (the channels-last
kernel, equal values and gradients), side by side in one process on the same weights and inputs.

    OMP_NUM_THREADS=1 python benchmarks/maxpool.py  # --batch-sizes 32 256 1000, --repeats 20

For each batch size: milliseconds per forward without gradients (what evaluation and counting draws
do) and per forward and input-gradient backward (what an attack step does), the medians of
``repeats`` runs (torch's, then advkit's), their ratio, and whether the outputs and input
gradients are bit-equal. On a GPU, or scripted, ``MaxPool2x2`` is torch's own.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch

from advkit.models import SmallCNN


def median_ms(step: Callable[[], object], repeats: int) -> float:
    """The median milliseconds of ``repeats`` calls of ``step``, after two that warm up."""
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[2:])


def forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x)


def input_gradient(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_()
    return torch.autograd.grad(net(x).logsumexp(1).sum(), x)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256, 1000])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    ours = SmallCNN().eval()
    torchs = SmallCNN().eval()
    torchs.load_state_dict(ours.state_dict())
    torchs.conv[2], torchs.conv[5] = torch.nn.MaxPool2d(2), torch.nn.MaxPool2d(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| batch | pass | torch's ms | advkit's ms | speed-up | bit-equal |\n|---|---|---|---|---|---|")
    for batch in args.batch_sizes:
        x = torch.rand(batch, 1, 28, 28)
        for name, run in (("forward", forward), ("forward + backward", input_gradient)):
            equal = torch.equal(run(ours, x), run(torchs, x))
            a = median_ms(functools.partial(run, torchs, x), args.repeats)
            b = median_ms(functools.partial(run, ours, x), args.repeats)
            print(f"| {batch} | {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {equal} |")


if __name__ == "__main__":
    main()

"""evaluate on data larger than memory (issue 21 item 1): 20,000 RGB 224x224 images made on read
(12 GB as one float32 tensor) under 3 GB of peak resident memory, and the same curve as in memory.

    OMP_NUM_THREADS=1 python benchmarks/stream_memory.py stream  # peak RSS (--n, --batch-size)
    OMP_NUM_THREADS=1 python benchmarks/stream_memory.py compare --n 1000  # streamed == in memory

The data is :class:`Lazy`: image i is drawn on ``__getitem__`` from a generator seeded i (uniform noise
in [0, 0.5], plus 0.5 on a 64x40 rectangle whose place encodes the label, so that a model can learn
it); nothing is held. The model is a tiny conv net (a stride-8 8x8 convolution to 8 channels, ReLU,
4x4 average pooling, a linear layer to 10 classes; seed 0, trained for 60 Adam steps on images past
the evaluated ones). ``stream`` runs ``evaluate`` with FGSM at L-inf eps 0, 8/255, 16/255, 32/255
(batch size 128, the checks at their defaults) in its own process and prints the peak resident
memory (``ru_maxrss``) and the time; ``compare`` evaluates the first ``--n`` samples streamed and as
one in-memory tensor pair and says whether the reports are equal (timings aside).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import torch
from torch import nn
from torch.utils.data import Dataset

import advkit

SIZE, CLASSES = 224, 10


class Lazy(Dataset):
    """``n`` RGB SIZE x SIZE images, image i made from seed i when read (none held in memory)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(i)
        label = int(torch.randint(CLASSES, (), generator=g))
        x = torch.rand(3, SIZE, SIZE, generator=g) * 0.5
        row, col = divmod(label, 5)
        x[:, row * 64:row * 64 + 64, col * 40:col * 40 + 40] += 0.5
        return x, label


def tiny_net() -> nn.Module:
    """The tiny conv net, trained for 60 Adam steps on 64 images a step drawn past the evaluated ones."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(128, CLASSES))
    train = Lazy(10**6)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(60):
        items = [train[10**5 + 64 * step + k] for k in range(64)]
        x, y = torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def run(data, n: int, model: nn.Module, checks: bool = True, batch_size: int = 128) -> advkit.evaluation.Report:
    return advkit.evaluate(model, data, attacks="fgsm", eps=[0, 8 / 255, 16 / 255, 32 / 255], n=n,
                           batch_size=batch_size, device="cpu", progress=False, checks=checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["stream", "compare"])
    parser.add_argument("--n", type=int, default=None, help="samples (stream: 20000; compare: 1000)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    if args.part == "stream":
        n = args.n or 20000
        t0 = time.perf_counter()
        report = run(Lazy(n), n, tiny_net(), batch_size=args.batch_size)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux -> GB
        print(f"n={n} ({n * 3 * SIZE * SIZE * 4 / 1e9:.1f} GB as one float32 tensor), batch size {args.batch_size}: "
              f"peak RSS {peak:.2f} GB, {time.perf_counter() - t0:.0f} s")
        print("curve:", {name: [round(a, 4) for _, a in points] for name, points in report.curve.items()})
        print("checks:", {c.name: c.status for c in report.checks})
        return 0 if peak < 3 else 1
    n = args.n or 1000
    lazy = Lazy(n)
    x = torch.stack([lazy[i][0] for i in range(n)])
    y = torch.tensor([lazy[i][1] for i in range(n)])
    model = tiny_net()
    streamed, in_memory = run(lazy, n, model), run((x, y), n, model)
    equal = streamed.to_dict(timings=False) == in_memory.to_dict(timings=False)
    print(f"n={n}: streamed report == in-memory report: {equal}")
    print("curve:", {name: [round(a, 4) for _, a in points] for name, points in streamed.curve.items()})
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())

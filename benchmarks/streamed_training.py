"""Peak resident memory of the training loops on a lazily generated dataset far larger than memory
(issue 21, item 1): adversarial training, plain training (``advkit.train.fit``) and the GAN trainer read
it through ``advkit.data.Samples``, a batch at a time, so memory holds a few batches, not the data.

The dataset makes image i (3 x size x size, float32, uniform in [0, 1], seeded by i) when it is read:
20,000 images of 224 x 224 are 12 GB as one float tensor. Each loop runs ``--steps`` steps (then an
exception stops it: an epoch of 20,000 images is not needed to see its memory), with a checkpoint folder
(so the run's data fingerprint is taken) and eval_data. One process per loop, so each peak is its own:

    python benchmarks/streamed_training.py                 # the three loops, 20,000 images of 224 x 224
    python benchmarks/streamed_training.py --n 2000                       # a tenth of the data: the same peaks
    python benchmarks/streamed_training.py --n 128 --in-memory            # the loops' own memory: 128 images as tensors

``peak_rss_mb`` is the process's peak resident set (``ru_maxrss``) and ``rss_before_mb`` the resident set
after importing torch and advkit; each loop reads ``steps + 1`` batches (the last one's forward stops it),
the first sample(s) (checked against the model) and, with the checkpoint folder, the 64 items of the data
fingerprint.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import Dataset


class Lazy(Dataset):
    """``n`` images made when read (image i seeded by i) and labels ``i % 10``; counts the reads."""

    def __init__(self, n: int, size: int):
        self.n, self.size, self.reads = n, size, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.reads += 1
        return torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(i)), i % 10


class Stop(Exception):
    """Raised by the step counter once the steps asked for are done."""


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def stop_after(module: nn.Module, calls: int) -> list[int]:
    """A forward hook that raises :class:`Stop` on the ``calls``-th training-mode forward of ``module``."""
    count = [0]

    def hook(mod, args, out):
        if mod.training:
            count[0] += 1
            if count[0] >= calls:
                raise Stop
    module.register_forward_hook(hook)
    return count


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(loop: str, n: int, size: int, steps: int, batch: int, in_memory: bool = False) -> dict:
    from advkit.defenses import adversarial_training
    from advkit.gan import GANTrainer, dcgan
    from advkit.train import fit

    data, eval_data = Lazy(n, size), Lazy(n, size)
    if in_memory:  # the baseline: the same images as tensors, read before the loop starts
        x = torch.stack([data[i][0] for i in range(n)])
        data = eval_data = (x, torch.arange(n) % 10)
    before = rss_mb()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        try:
            if loop == "advtrain":
                model = classifier()
                stop_after(model, steps + 1)  # the loss's train-mode forwards (the attack runs in eval mode)
                adversarial_training(model, data, eps=8 / 255, steps=2, batch_size=batch, epochs=1, eval_data=eval_data,
                                     checkpoint_dir=folder, progress=False, device="cpu")
            elif loop == "fit":
                model = classifier()
                stop_after(model, steps + 1)
                fit(model, data, epochs=1, batch_size=batch, progress=False, device="cpu")
            else:
                G, D = dcgan(channels=3, size=size, num_classes=10, width=4, latent_dim=16)
                trainer = GANTrainer(G, D, conditional="class", device="cpu")
                trainer.fit(data, steps=steps, batch_size=batch, checkpoint_dir=folder, progress=False)
        except Stop:
            pass
    batch_mb = batch * 3 * size * size * 4 / 2**20
    return {"loop": loop, "in_memory": in_memory, "images": n, "size": size,
            "data_gb_as_float32": n * 3 * size * size * 4 / 1e9, "steps": steps, "batch": batch,
            "batch_mb": round(batch_mb, 1), "items_read": getattr(data, "reads", n),
            "eval_items_read": getattr(eval_data, "reads", n), "rss_before_mb": round(before),
            "peak_rss_mb": round(rss_mb()), "peak_over_batch": round((rss_mb() - before) / batch_mb, 1),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["advtrain", "fit", "gan", "all"], default="all")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--in-memory", action="store_true", help="the baseline: the n images as tensors first")
    args = parser.parse_args()
    if args.loop != "all":
        print(json.dumps(run(args.loop, args.n, args.size, args.steps, args.batch, args.in_memory)))
        return
    for loop in ("advtrain", "fit", "gan"):  # one process each: each peak is its loop's own
        subprocess.run([sys.executable, __file__, "--loop", loop, "--n", str(args.n), "--size", str(args.size),
                        "--steps", str(args.steps), "--batch", str(args.batch)]
                       + ["--in-memory"] * args.in_memory, check=True)


if __name__ == "__main__":
    main()

"""Forwards per rank of a sharded evaluate, sanity checks included (issue 21 item 5): with 2 processes
each rank should forward at most 0.55 of the images one process forwards, with the same report.

    OMP_NUM_THREADS=1 python benchmarks/sharded_checks.py

One process evaluates a digits MLP (64-64-10, 150 full-batch Adam steps, seed 0) on the 360 test
digits with the default attacks (FGSM, APGD-CE), eps 0, 0.05, 0.1, 0.2, batch size 32, the checks at
their defaults (probe 100) and 8 examples, counting the images its model forwards (a forward hook);
then a 2-process gloo group (torchrun, this script with ``--child``) runs the same. Printed: each
rank's forwards as a share of one process's, and whether the reports are equal (timings aside).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

import advkit

KW = dict(eps=[0.0, 0.05, 0.1, 0.2], batch_size=32, device="cpu", progress=False)


def model() -> nn.Module:
    train = advkit.data.load("digits")[0]
    x, y = train.tensors
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def counted() -> tuple[dict, int]:
    """The report (timings aside) and the images forwarded, in this process (or rank)."""
    net, forwards = model(), [0]
    net.register_forward_hook(lambda m, inputs, output: forwards.__setitem__(0, forwards[0] + len(inputs[0])))
    report = advkit.evaluate(net, advkit.data.load("digits")[1], **KW).to_dict(timings=False)
    return report, forwards[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help="(internal) the folder a rank writes its counts to")
    args = parser.parse_args()
    if args.child:
        torch.distributed.init_process_group("gloo")
        report, forwards = counted()
        rank = torch.distributed.get_rank()
        Path(args.child, f"rank{rank}.json").write_text(json.dumps({"report": report, "forwards": forwards}))
        torch.distributed.destroy_process_group()
        return 0
    one, total = counted()
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        __file__, "--child", out], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(2)]
    shares = [r["forwards"] / total for r in ranks]
    same = all(r["report"] == one for r in ranks)
    print(f"one process: {total} images forwarded; ranks: {[r['forwards'] for r in ranks]} "
          f"(shares {', '.join(f'{s:.3f}' for s in shares)}); reports equal: {same}")
    return 0 if same and max(shares) <= 0.55 else 1


if __name__ == "__main__":
    sys.exit(main())

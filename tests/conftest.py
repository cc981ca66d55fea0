"""Shared fixtures: the embedded data, one trained SmallCNN, and torchattacks for the tests that need it.

The SmallCNN is trained once per test run and is the same model in a serial run and under
pytest-xdist: it trains with a fixed thread count, and it is cached only in this run's temp folder
(shared by the xdist workers through a file lock), never in one that outlives the run.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import torch

import advkit

#: Threads the shared model trains with, in every mode (results depend on the thread count).
TRAIN_THREADS = 1


def pytest_configure(config):
    """One intra-op thread per pytest-xdist worker: the workers already fill the cores, and two
    threads per worker on two cores make small ops spin (measured: the GAN tests ran 10x slower)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def run_folder(tmp_path_factory) -> Path:
    """This run's temp folder, common to all xdist workers: a worker's basetemp is a subfolder of
    the run's (``pytest-N/popen-gw0``); a serial run's basetemp is the run's folder itself."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def mnist5k():
    """(train, test) TensorDatasets of the embedded MNIST-5k."""
    return advkit.data.load("mnist5k")


@pytest.fixture(scope="session")
def trained_cnn(mnist5k, tmp_path_factory):
    """A standard (non-robust) SmallCNN trained on mnist5k train, in eval mode, on the CPU."""
    shared = run_folder(tmp_path_factory)
    path, lock = shared / "smallcnn_mnist5k.pt", shared / "smallcnn_mnist5k.lock"
    model = advkit.models.SmallCNN()
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if path.exists():
            model.load_state_dict(torch.load(path, weights_only=True))
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(TRAIN_THREADS)
            try:
                torch.manual_seed(0)
                model = advkit.models.SmallCNN()
                advkit.train.fit(model, mnist5k[0], epochs=8, seed=0, device="cpu", progress=False)
            finally:
                torch.set_num_threads(threads)
            tmp = path.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(path)
    return model.eval()


@pytest.fixture(scope="session")
def test_batch(mnist5k):
    """The first 500 mnist5k test images and labels."""
    x, y = mnist5k[1].tensors
    return x[:500], y[:500]


@pytest.fixture(scope="session")
def torchattacks():
    """The torchattacks module; the test that asks for it is skipped where it is not installed."""
    return pytest.importorskip("torchattacks")

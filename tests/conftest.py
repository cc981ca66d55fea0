"""Shared fixtures (the embedded data, one trained SmallCNN, torchattacks for the tests that need it)
and what every run needs to tell the truth on any machine:

- The SmallCNN is trained once per test run and is the same model in a serial run and under
  pytest-xdist: it trains with a fixed thread count, and it is cached only in this run's temp folder
  (shared by the xdist workers through a file lock), never in one that outlives the run.
- Under pytest-xdist the tests are scheduled with ``--dist loadgroup`` (also when ``-n`` alone asks
  for the default ``load``): the tests of a module marked ``xdist_group`` run on one worker, so a
  module's heavy fixture (a trained model, a 2-process group) is built once per run, not once per
  worker that happens to run one of its tests.
- Markers (registered in pyproject.toml): ``browser`` needs headless Chromium (skipped with the
  reason where it is missing, an error where ``CI`` is set, as CI must run it); ``gpu`` needs a CUDA
  GPU (skipped with the reason without one); ``slow`` takes more than about 5 s on one core.
- Hypothesis runs derandomized under ``CI`` (the same examples on every machine and every run);
  elsewhere it draws new examples each run. ``HYPOTHESIS_PROFILE=ci`` or ``=dev`` chooses.
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import settings

import advkit

#: Threads the shared model trains with, in every mode (results depend on the thread count).
TRAIN_THREADS = 1

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config):
    """One intra-op thread per pytest-xdist worker: the workers already fill the cores, and two
    threads per worker on two cores make small ops spin (measured: the GAN tests ran 10x slower).
    ``-n N``'s default ``load`` schedules as ``loadgroup`` (see the module's docstring): the controller
    picks that scheduler, and each worker (which parses the original command line again) names its
    tests' groups."""
    dist = getattr(config.option, "dist", "no")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        if dist in ("load", "no"):
            config.option.loadgroup = True
    elif dist == "load":
        config.option.dist = "loadgroup"


def chromium() -> str | None:
    """The headless browser the ``browser`` tests drive, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_runtest_setup(item):
    if item.get_closest_marker("browser") and chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests but chromium is not installed (.ci/run installs Debian's "
                        "`chromium`; elsewhere: apt-get install -y chromium)", pytrace=False)
        pytest.skip("needs headless Chromium (Debian: apt-get install -y chromium); CI runs it")
    if item.get_closest_marker("gpu") and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")


def run_folder(tmp_path_factory) -> Path:
    """This run's temp folder, common to all xdist workers: a worker's basetemp is a subfolder of
    the run's (``pytest-N/popen-gw0``); a serial run's basetemp is the run's folder itself."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def mnist5k():
    """(train, test) TensorDatasets of the embedded MNIST-5k."""
    return advkit.data.load("mnist5k")


def shared_model(tmp_path_factory, name: str, model: torch.nn.Module, train: Callable[[], torch.nn.Module]):
    """``model`` with the weights ``train()`` gives, trained once per run: the first process to ask
    trains (with :data:`TRAIN_THREADS` threads) and saves them in the run's folder, under a file lock
    the others wait on and then load; in eval mode, on the CPU."""
    shared = run_folder(tmp_path_factory)
    path, lock = shared / f"{name}.pt", shared / f"{name}.lock"
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
        model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


@pytest.fixture(scope="session")
def trained_cnn(mnist5k, tmp_path_factory):
    """A standard (non-robust) SmallCNN trained on mnist5k train, in eval mode, on the CPU."""

    def train():
        torch.manual_seed(0)
        model = advkit.models.SmallCNN()
        advkit.train.fit(model, mnist5k[0], epochs=8, seed=0, device="cpu", progress=False)
        return model

    return shared_model(tmp_path_factory, "smallcnn_mnist5k", advkit.models.SmallCNN(), train)


@pytest.fixture(scope="session")
def robust_cnn(tmp_path_factory):
    """benchmarks/autoattack.py's PGD-trained SmallCNN (about 20 CPU seconds), in eval mode, on the CPU."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "autoattack.py"
    spec = importlib.util.spec_from_file_location("advkit_benchmark_autoattack", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return shared_model(tmp_path_factory, "robust_cnn_mnist5k", advkit.models.SmallCNN(width=16, hidden=64),
                        benchmark.robust_cnn)


@pytest.fixture(scope="session")
def test_batch(mnist5k):
    """The first 500 mnist5k test images and labels."""
    x, y = mnist5k[1].tensors
    return x[:500], y[:500]


@pytest.fixture(scope="session")
def torchattacks():
    """The torchattacks module; the test that asks for it is skipped where it is not installed."""
    return pytest.importorskip("torchattacks")

"""Shared fixtures (the embedded data, the trained models many tests share, torchattacks for the tests
that need it) and what every run needs to tell the truth on any machine:

- The shared models (shared_models.py) are committed in tests/assets/, the same weights on every
  machine; under xdist the workers run the slow tests first (the run ends on short tests).
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

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

import advkit

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from shared_models import shared_model  # noqa: E402

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


def pytest_collection_modifyitems(config, items):
    """On an xdist worker (every worker sorts alike): the slow tests first, then the rest, each in
    collection order, so that no worker ends the run on a long test."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(scope="session")
def mnist5k():
    """(train, test) TensorDatasets of the embedded MNIST-5k."""
    return advkit.data.load("mnist5k")


@pytest.fixture(scope="session")
def trained_cnn():
    """A standard (non-robust) SmallCNN trained on mnist5k train, in eval mode, on the CPU."""
    return shared_model("smallcnn_mnist5k")


@pytest.fixture(scope="session")
def robust_cnn():
    """benchmarks/autoattack.py's PGD-trained SmallCNN, in eval mode, on the CPU."""
    return shared_model("robust_cnn_mnist5k")


@pytest.fixture(scope="session")
def test_batch(mnist5k):
    """The first 500 mnist5k test images and labels."""
    x, y = mnist5k[1].tensors
    return x[:500], y[:500]


@pytest.fixture(scope="session")
def torchattacks():
    """The torchattacks module; the test that asks for it is skipped where it is not installed."""
    return pytest.importorskip("torchattacks")

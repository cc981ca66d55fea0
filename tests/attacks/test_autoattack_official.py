"""advkit's AutoAttack against the official code (``pyautoattack``, the authors' implementation) on
a small adversarially trained CNN: ours must be at least as strong, up to one sample in a hundred.

Needs the ``autoattack`` extra (part of ``dev``); skipped only when ``pyautoattack`` is missing.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

import advkit
from advkit.attacks import FAB, AutoAttack

pyautoattack = pytest.importorskip("pyautoattack")

EPS = 0.3
N = 100


def _benchmark():
    """benchmarks/autoattack.py, which holds the robust CNN's training recipe."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "autoattack.py"
    spec = importlib.util.spec_from_file_location("advkit_benchmark_autoattack", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def robust_cnn(tmp_path_factory):
    """The benchmark's PGD-trained SmallCNN (about 20 CPU seconds), cached in this run's temp folder."""
    base = tmp_path_factory.getbasetemp()
    folder = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # shared by this run's workers only
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _benchmark().cached_robust_cnn(folder / "robust_cnn_mnist5k.pt")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images():
    x, y = advkit.data.load("mnist5k")[1].tensors
    return x[:N], y[:N]


def official_robust(model, x, y, **kwargs) -> torch.Tensor:
    atk = pyautoattack.AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=0, **kwargs)
    x_adv, _ = atk.run_standard_evaluation(x, y, batch_size=N)
    assert float((x_adv - x).abs().amax()) <= EPS + 1e-6
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


@pytest.mark.slow
def test_autoattack_is_as_strong_as_the_official_standard_version(robust_cnn, images):
    x, y = images
    theirs = int(official_robust(robust_cnn, x, y).sum())
    res = AutoAttack(robust_cnn, eps=EPS, norm="linf", seed=0).run(x, y)
    ours = int((~res.success).sum())
    assert theirs >= 5, "the model must keep some robustness for the comparison to mean anything"
    assert ours <= theirs + 1, f"advkit AutoAttack leaves {ours}/{N} robust, the official {theirs}/{N}"


@pytest.mark.slow
def test_fab_t_is_as_strong_as_the_official_fab_t(robust_cnn, images):
    """Both are deterministic here (one run from the clean point per target), so no slack is needed."""
    from pyautoattack.fab_pt import FABAttack_PT

    x, y = (t[:40] for t in images)
    official = FABAttack_PT(robust_cnn, norm="Linf", n_restarts=1, n_iter=100, eps=EPS, seed=0, targeted=True,
                            n_target_classes=9, device="cpu")
    x_adv = official.perturb(x, y)
    with torch.no_grad():
        theirs = (robust_cnn(x_adv).argmax(1) == y) | ((x_adv - x).flatten(1).abs().amax(1) > EPS)
    ours = ~FAB(robust_cnn, eps=EPS).run(x, y).success
    assert 0 < int(theirs.sum()) < len(x)
    assert int(ours.sum()) <= int(theirs.sum()), (int(ours.sum()), int(theirs.sum()))

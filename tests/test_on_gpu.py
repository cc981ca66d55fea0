"""The GPU path on a real CUDA device, part of a GPU machine's run (marker ``gpu``: skipped with the
reason where torch sees no GPU). The same options checked on the CPU, where they change nothing:
tests/evaluation/test_gpu_options_on_the_cpu.py and the ``..._on_the_cpu`` tests."""
from __future__ import annotations

import math

import pytest
import torch

import advkit
from advkit.models import SmallCNN

pytestmark = pytest.mark.gpu

#: Test digits per evaluation, and how many of them float rounding on another device may flip.
N, FLIPS = 200, 3


@pytest.fixture(scope="module")
def digits_cnn():
    """A SmallCNN trained on the 8x8 digits on the CPU, and 200 test digits."""
    train, test = advkit.data.load("digits")
    torch.manual_seed(0)
    model = SmallCNN(input_size=8)
    advkit.train.fit(model, train, epochs=3, seed=0, device="cpu", progress=False)
    x, y = test.tensors
    return model.eval(), (x[:N], y[:N])


def evaluation(model, data, **options):
    return advkit.evaluate(model, data, attacks=["fgsm", "pgd-10"], eps=[0, 0.1, 0.2], checks=False, examples=0,
                           progress=False, **options)


def assert_close_curves(a, b, samples: int) -> None:
    assert a.curve.keys() == b.curve.keys()
    for name in a.curve:
        for (e0, a0), (e1, a1) in zip(a.curve[name], b.curve[name], strict=True):
            assert e0 == e1 and abs(a0 - a1) <= samples / N, (name, e0, a0, a1)


def test_evaluate_on_cuda_gives_the_cpus_curve_and_leaves_the_model_where_it_was(digits_cnn):
    model, data = digits_cnn
    cpu, cuda = evaluation(model, data, device="cpu"), evaluation(model, data, device="cuda")
    assert next(model.parameters()).device.type == "cpu"
    assert cuda.to_dict()["device"].startswith("cuda") and cuda.config["batch_size"].startswith("auto")
    assert cuda["model"].clean_accuracy > 0.8
    assert_close_curves(cpu, cuda, FLIPS)


def test_amp_on_cuda_is_recorded_and_moves_the_curve_little(digits_cnn):
    """bf16 autocast rounds the logits and the attacks' gradients: a few more samples may flip."""
    model, data = digits_cnn
    plain, amp = evaluation(model, data, device="cuda"), evaluation(model, data, device="cuda", amp=True)
    assert amp.config["amp"] is True and "amp" not in plain.config
    assert_close_curves(plain, amp, 10)


@pytest.mark.parametrize("amp", [False, True])
def test_adversarial_training_trains_on_cuda(amp):
    """Two epochs of FGSM-RS on the digits on the GPU (bf16 autocast with ``amp``): the model stays
    there and learns (measured on the CPU, seeds 0-2: clean accuracy 0.56-0.71 after two epochs)."""
    x, y = advkit.data.load("digits")[0].tensors
    torch.manual_seed(0)
    model, history = advkit.defenses.adversarial_training(
        SmallCNN(input_size=8), (x, y), method="fgsm-rs", eps=0.2, epochs=2, seed=0, device="cuda", amp=amp,
        progress=False)
    assert next(model.parameters()).device.type == "cuda" and len(history) == 2
    assert all(math.isfinite(r.train_loss) for r in history) and history[-1].clean_accuracy > 0.3


def test_certify_counts_under_amp_on_cuda_stay_close_to_float32s(digits_cnn):
    """bf16 autocast for the counting forwards: the same noise draws (one seeded generator), so only
    draws near a tie between two classes may count for another class."""
    model, (x, _) = digits_cnn
    exact, fast = (advkit.defenses.certify(model, x[:50], 0.25, n0=20, n=200, seed=0, device="cuda", progress=False,
                                           amp=amp) for amp in (False, True))
    assert (exact.counts - fast.counts).abs().max() <= 10 and (exact.prediction != fast.prediction).sum() <= 2

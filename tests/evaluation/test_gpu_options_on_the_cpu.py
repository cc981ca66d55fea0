"""evaluate's GPU options, checked on the CPU where no GPU is needed: adaptive batch sizes (against a
model that pretends to run out of CUDA memory), autocast (a no-op on the CPU), channels_last and compile.
The same options on a real GPU: tests/test_on_gpu.py (marker ``gpu``)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import PGD, AutoAttack
from advkit.evaluation.batched import BatchSize, attack_at, predict
from advkit.evaluation.options import AUTO_BATCH_START, DEFAULT_BATCH, EvaluationOptions
from advkit.evaluation.specs import with_amp
from advkit.models import SmallCNN


class Cramped(nn.Module):
    """A linear classifier that runs out of (pretend) CUDA memory on batches above ``limit`` rows."""

    def __init__(self, limit: int):
        super().__init__()
        torch.manual_seed(0)
        self.net, self.limit, self.sizes = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), limit, []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (pretend)")
        return self.net(x)


def data(n=37):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_an_adaptive_batch_halves_on_out_of_memory_and_loses_no_sample():
    x, y = data()
    model = Cramped(limit=8)
    todo = torch.arange(len(x))
    atk = PGD(model, 0.1, steps=3)
    sizes = BatchSize(32, adaptive=True)
    fooled, ends, cost = attack_at(atk, x, y, todo, 0.1, sizes, torch.device("cpu"), seed=0)
    assert sizes.now == 8 and sizes.start == 32  # 32 -> 16 -> 8, kept for the later batches
    expected = attack_at(atk, x, y, todo, 0.1, 8, torch.device("cpu"), seed=0)  # fixed batches that fit
    assert torch.equal(fooled, expected[0]) and torch.equal(ends, expected[1])
    assert cost.attacked == len(x) and cost.forwards == expected[2].forwards
    assert predict(model, x, BatchSize(64, adaptive=True), torch.device("cpu"))[0].tolist() == \
        model.net(x).argmax(1).tolist()


def test_a_fixed_batch_size_raises_out_of_memory():
    x, y = data()
    with pytest.raises(torch.OutOfMemoryError):
        attack_at(PGD(Cramped(limit=8), 0.1, steps=1), x, y, torch.arange(len(x)), 0.1, 16, torch.device("cpu"), 0)


def test_out_of_memory_on_one_row_is_raised():
    x, y = data(3)
    with pytest.raises(torch.OutOfMemoryError):
        predict(Cramped(limit=0), x, BatchSize(4, adaptive=True), torch.device("cpu"))


def test_the_batch_size_is_chosen_on_cuda_only():
    cpu = EvaluationOptions(device="cpu")
    assert (cpu.batches.start, cpu.batches.adaptive, cpu.config(5)["batch_size"]) == (DEFAULT_BATCH, False, 256)
    cuda = EvaluationOptions(device="cuda")  # options only: nothing runs on the device
    assert (cuda.batches.start, cuda.batches.adaptive) == (AUTO_BATCH_START, True)
    assert cuda.config(5)["batch_size"].startswith("auto")
    fixed = EvaluationOptions(device="cuda", batch_size=64)
    assert (fixed.batches.start, fixed.batches.adaptive) == (64, False)


@pytest.fixture(scope="module")
def digits():
    train, test = advkit.data.load("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(288, 10))
    x, y = train.tensors
    x = x.view(len(x), -1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    xt, yt = test.tensors
    return model.eval(), (xt.view(len(xt), 1, 8, 8)[:60], yt[:60])


def curves(model, test, **options):
    net = nn.Sequential(nn.Flatten(), model)
    rep = advkit.evaluate(net, test, attacks=["fgsm", "pgd-5"], eps=[0, 0.1, 0.2], progress=False, checks=False,
                          examples=0, device="cpu", **options)
    return rep.curve, rep.config


def test_amp_changes_nothing_on_the_cpu_and_is_recorded(digits):
    model, test = digits
    plain, config = curves(model, test)
    amp, amp_config = curves(model, test, amp=True)
    assert amp == plain
    assert "amp" not in config and amp_config["amp"] is True


def test_compile_and_channels_last_run_the_model_for_the_evaluation_only(digits):
    model, test = digits
    calls = []

    def backend(gm, example_inputs):  # records that torch.compile was used; runs eagerly
        calls.append(1)
        return gm.forward

    plain, _ = curves(model, test)
    compiled, config = curves(model, test, compile={"backend": backend}, channels_last=True)
    assert calls, "the evaluation's forwards did not go through torch.compile"
    assert getattr(model, "_compiled_call_impl", None) is None
    assert all(p.is_contiguous() for p in model.parameters())
    for name in plain:
        for (e0, a0), (e1, a1) in zip(plain[name], compiled[name], strict=True):
            assert e0 == e1 and abs(a0 - a1) <= 1 / 60  # same kernels on the CPU, up to float rounding
    assert config["channels_last"] is True and config["compile"] == {"backend": repr(backend)}


@pytest.mark.parametrize(("option", "value", "message"), [("amp", "yes", "amp must be True or False"),
                                                         ("channels_last", 1, "channels_last must be True or False"),
                                                         ("compile", "max-autotune", "compile must be True, False")])
def test_bad_gpu_options_are_refused_before_any_work(option, value, message):
    with pytest.raises(TypeError, match=message):
        advkit.evaluate(SmallCNN(), (torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)), **{option: value})


def test_with_amp_copies_the_attack_and_its_ensemble():
    model = SmallCNN()
    atk = AutoAttack(model, 0.1)
    fast = with_amp(atk, True)
    assert fast is not atk and fast.amp and all(part.attack.amp for part in fast.components)
    assert not atk.amp and not any(part.attack.amp for part in atk.components)
    assert with_amp(atk, False) is atk

"""The GPU path's switches: off by default, undone after the block, CPU numbers unchanged."""
import pytest
import torch

from advkit.acceleration import accelerated, autocast, compile_options, is_channels_last
from advkit.models import SmallCNN


def test_autocast_is_a_no_op_on_the_cpu():
    model = SmallCNN().eval()
    x = torch.rand(4, 1, 28, 28)
    with autocast("cpu", True):
        out = model(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, model(x))


def test_channels_last_is_undone_and_keeps_the_outputs():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    x = torch.rand(8, 1, 28, 28)
    before = model(x)
    with accelerated(model, channels_last=True) as same:
        assert same is model and is_channels_last(model)
        inside = model(x)
    assert not is_channels_last(model)
    torch.testing.assert_close(inside, before, rtol=1e-5, atol=1e-5)
    assert torch.equal(model(x), before)


def test_a_model_already_channels_last_stays_so():
    model = SmallCNN().to(memory_format=torch.channels_last)
    with accelerated(model, channels_last=True):
        pass
    assert is_channels_last(model)


def test_compile_routes_calls_through_torch_compile_and_is_undone():
    calls = []

    def backend(gm, example_inputs):  # a torch.compile backend that records its use and runs eagerly
        calls.append(len(example_inputs))
        return gm.forward

    model = SmallCNN().eval()
    x = torch.rand(2, 1, 28, 28)
    with accelerated(model, compile={"backend": backend}):
        out = model(x)
    assert calls, "the model's call did not go through torch.compile"
    assert getattr(model, "_compiled_call_impl", None) is None
    torch.testing.assert_close(out, model(x))


@pytest.mark.parametrize("bad", ["yes", 1, ["mode"]])
def test_compile_option_errors_name_the_argument(bad):
    with pytest.raises(TypeError, match="compile must be True, False or a dict"):
        compile_options(bad)


def test_compile_option_values():
    assert compile_options(False) is None and compile_options(None) is None
    assert compile_options(True) == {}
    assert compile_options({"mode": "max-autotune"}) == {"mode": "max-autotune"}

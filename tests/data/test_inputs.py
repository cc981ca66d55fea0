"""Small holes of issue 18: Datasets of numpy items or dicts, a fractional n, a model built for other
channels, Square's progress bar with progress=False. Each got a raw torch error (or printed) before."""
import sys
from pathlib import Path

import pytest
import torch

import advkit
import advkit.progress
from advkit.attacks import FGSM, PGD, AutoAttack, Square
from advkit.attacks import autoattack as autoattack_module
from advkit.data import as_tensors
from advkit.models import SmallCNN
from advkit.validation import fits_model

sys.path.insert(0, str(Path(__file__).parents[1]))  # pytest runs with --import-mode=importlib
from masked import NoGrad  # noqa: E402


class Items(torch.utils.data.Dataset):
    """A map-style Dataset over a list of items, as a user writes one."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def digits():
    return advkit.data.load("digits")


@pytest.fixture(scope="module")
def small(digits):
    """32 test digits as tensors."""
    x, y = digits[1].tensors
    return x[:32], y[:32]


def numpy_items(x, y, double: bool = False):
    return Items([((a.double() if double else a).numpy(), b.numpy()) for a, b in zip(x, y, strict=True)])


# -- Datasets of numpy arrays or dicts ------------------------------------------------------------

@pytest.mark.parametrize("double", [False, True], ids=["float32", "float64"])
def test_numpy_items_read_as_float32_tensors(small, double):
    x, y = small
    bx, by = as_tensors(numpy_items(x, y, double))
    assert bx.dtype == torch.float32 and torch.equal(bx, x) and torch.equal(by, y)
    ints = Items([(a.numpy(), int(b)) for a, b in zip(x, y, strict=True)])  # plain int labels too
    assert torch.equal(as_tensors(ints, limit=5)[1], y[:5])


def test_numpy_float64_pair_trains(small):
    x, y = small
    model = SmallCNN(input_size=8)
    losses = advkit.train.fit(model, (x.double().numpy(), y.numpy()), epochs=1, batch_size=16, progress=False)
    assert len(losses) == 2


def test_numpy_items_work_in_fit_evaluate_adversarial_training_and_gans(small):
    x, y = small
    data = numpy_items(x, y, double=True)
    model = SmallCNN(input_size=8)
    assert len(advkit.train.fit(model, data, epochs=1, batch_size=16, progress=False)) == 2
    report = advkit.evaluate(model, data, attacks=["fgsm"], eps=[0, 0.1], checks=False, progress=False)
    assert report.config["n"] == 32
    expected = advkit.evaluate(model, (x, y), attacks=["fgsm"], eps=[0, 0.1], checks=False, progress=False)
    assert report.table() == expected.table()
    _, history = advkit.defenses.adversarial_training(SmallCNN(input_size=8), data, method="fgsm-rs", eps=0.1,
                                                      epochs=1, batch_size=16, progress=False)
    assert len(history) == 1
    trainer = advkit.gan.GANTrainer(advkit.gan.dcgan(channels=1, size=8)[0], advkit.gan.dcgan(channels=1, size=8)[1])
    assert len(trainer.fit(data, steps=1, batch_size=16, progress=False)["g_loss"]) == 1


DICT_MESSAGE = (r"data must yield \(image, label\) pairs; item 0 is a dict with keys 'image', 'label': wrap the "
                r"dataset so that it returns pairs, e.g. a Dataset whose __getitem__ returns "
                r"\(d\['image'\], d\['label'\]\)")


def test_dict_items_are_a_type_error_that_says_what_to_pass(small):
    x, y = small
    data = Items([{"image": a, "label": b} for a, b in zip(x, y, strict=True)])
    model = SmallCNN(input_size=8)
    for run in (lambda: advkit.train.fit(model, data, epochs=1, progress=False),
                lambda: advkit.evaluate(model, data, attacks=["fgsm"], eps=[0], progress=False),
                lambda: advkit.defenses.adversarial_training(model, data, method="fgsm-rs", eps=0.1, epochs=1,
                                                             progress=False)):
        with pytest.raises(TypeError, match=DICT_MESSAGE):
            run()
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    with pytest.raises(TypeError, match=r"data must yield \(image, label\) pairs; batch 0 is a dict with keys"):
        as_tensors(loader)


@pytest.mark.parametrize("item,message", [
    ((torch.zeros(1, 8, 8),), r"item 0 is a tuple of 1"),
    (torch.zeros(1, 8, 8), r"item 0 is a Tensor"),
    (("a picture", 1), r"item 0: the image must be a tensor or a numpy array, got str"),
    ((torch.zeros(1, 8, 8), "three"), r"item 0: the label must be a number, a tensor or a numpy array, got str"),
])
def test_items_that_are_not_pairs_are_a_type_error(item, message):
    with pytest.raises(TypeError, match=message):
        as_tensors(Items([item]))


def test_items_of_different_shapes_and_empty_datasets_are_named():
    with pytest.raises(ValueError, match=r"data items' images differ in shape: item 0 has \(1, 8, 8\), "
                                         r"item 1 \(3, 8, 8\)"):
        as_tensors(Items([(torch.zeros(1, 8, 8), 0), (torch.zeros(3, 8, 8), 1)]))
    with pytest.raises(ValueError, match="data is an empty Dataset"):
        as_tensors(Items([]))


# -- n must be an integer >= 1 --------------------------------------------------------------------

@pytest.mark.parametrize("n,error,message", [
    (10.5, TypeError, "n must be an integer, got float 10.5"),
    ("3", TypeError, "n must be an integer, got str '3'"),
    (True, TypeError, "n must be an integer, got bool True"),
    (0, ValueError, "batch_size and n must be >= 1"),
])
def test_evaluate_n_must_be_an_integer(digits, n, error, message):
    with pytest.raises(error, match=message):
        advkit.evaluate(SmallCNN(input_size=8), digits[1], attacks=["fgsm"], eps=[0], n=n, progress=False)


def test_as_tensors_limit_must_be_an_integer(small):
    for data in (small, Items(list(zip(*small, strict=True)))):
        with pytest.raises(TypeError, match=r"limit \(the number of samples\) must be an integer, got float 10.5"):
            as_tensors(data, limit=10.5)
        assert len(as_tensors(data, limit=10)[0]) == 10


# -- a model built for other inputs ---------------------------------------------------------------

CHANNELS = (r"of shape \(\d+, 1, 8, 8\) does not fit the model, which expects other inputs \(Given groups=1, weight "
            r"of size \[32, 3, 3, 3\], expected input\[\d+, 1, 8, 8\] to have 3 channels, but got 1 channels instead\)")


def test_wrong_input_channels_are_a_value_error_naming_the_shape(small):
    x, y = small
    model = SmallCNN(in_channels=3, input_size=8)
    cases = [("x", lambda: PGD(model, 0.1, steps=2)(x, y)),
             ("x", lambda: FGSM(model, 0.1).run(x, y)),
             ("data images", lambda: advkit.evaluate(model, (x, y), attacks=["fgsm"], eps=[0, 0.1], progress=False)),
             ("data images", lambda: advkit.train.fit(model, (x, y), epochs=1, progress=False)),
             ("data images", lambda: advkit.defenses.adversarial_training(model, (x, y), method="fgsm-rs", eps=0.1,
                                                                          epochs=1, progress=False)),
             ("data", lambda: advkit.attacks.AdvGAN(model, eps=0.1).fit((x, y), steps=1, progress=False))]
    for name, run in cases:
        with pytest.raises(ValueError, match=rf"^{name} {CHANNELS}; pass data of the shape the model was built for") \
                as err:
            run()
        assert isinstance(err.value.__cause__, RuntimeError)  # torch's own error stays chained


def test_wrong_input_size_is_named_too(small):
    x, y = small
    with pytest.raises(ValueError, match=r"x of shape \(32, 1, 8, 8\) does not fit the model, which expects other "
                                         r"inputs \(mat1 and mat2 shapes cannot be multiplied"):
        PGD(SmallCNN(input_size=28), 0.1, steps=2)(x, y)


def test_other_runtime_errors_pass_through_unchanged(small):
    x, y = small

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="^CUDA error: an illegal memory access"):
        PGD(Broken(), 0.1, steps=2)(x, y)
    with pytest.raises(RuntimeError, match="^something else"), fits_model(x):
        raise RuntimeError("something else")


# -- Square's progress bar ------------------------------------------------------------------------

@pytest.fixture
def bars_at_once(monkeypatch):
    """Long-work bars show from the first moment (not after 5 s), and AutoAttack's budgets are tiny."""
    monkeypatch.setattr(advkit.progress, "LONG_WORK_S", 0)
    monkeypatch.setattr(autoattack_module, "STEPS", 2)
    monkeypatch.setattr(autoattack_module, "QUERIES", 30)
    monkeypatch.setattr(autoattack_module, "TARGETS", 2)


def printed(capfd, run) -> str:
    capfd.readouterr()
    run()
    out, err = capfd.readouterr()
    return out + err


@pytest.fixture
def agreed(small):
    """(model, images, the model's own predictions as labels): every sample stands, so Square runs."""
    torch.manual_seed(0)
    model = SmallCNN(input_size=8).eval()
    x = small[0]
    with torch.no_grad():
        return model, x, model(x).argmax(1)


def test_square_prints_nothing_without_progress(agreed, bars_at_once, capfd):
    model, x, y = agreed
    assert "Square:" in printed(capfd, lambda: Square(model, 1e-4, n_queries=30)(x, y))  # the bar shows by default
    assert printed(capfd, lambda: Square(model, 1e-4, n_queries=30, progress=False)(x, y)) == ""
    assert "Square:" in printed(capfd, lambda: AutoAttack(model, eps=1e-4)(x, y))
    assert printed(capfd, lambda: AutoAttack(model, eps=1e-4, progress=False)(x, y)) == ""


@pytest.mark.parametrize("progress", [True, False])
@pytest.mark.parametrize("attacks", [["autoattack"], "object"])
def test_evaluate_without_progress_keeps_square_quiet(agreed, bars_at_once, capfd, attacks, progress):
    model, x, y = agreed
    mine = Square(model, 1e-4, n_queries=30)
    out = printed(capfd, lambda: advkit.evaluate(model, (x, y), attacks=[mine] if attacks == "object" else attacks,
                                                 eps=[0, 1e-4], checks=False, progress=progress))
    assert ("Square:" in out) if progress else out == ""
    assert mine.progress  # the caller's attack object is left as it was


@pytest.mark.parametrize("progress", [True, False])
def test_the_masking_fallback_square_is_quiet_too(agreed, bars_at_once, capfd, progress):
    model, x, y = agreed
    out = printed(capfd, lambda: advkit.evaluate(NoGrad(model), (x, y), attacks=["fgsm"], eps=[0, 1e-4], checks=False,
                                                 queries=30, progress=progress))
    assert ("Square:" in out) if progress else out == ""

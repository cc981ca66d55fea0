"""Models that hide their input gradient or return NaN off the data: evaluate completes, says so
in the record and the checks, and keeps the worst case an honest upper bound."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import PGD
from advkit.attacks.capabilities import capability, gradient_free, searches_the_model

sys.path.insert(0, str(Path(__file__).parents[1]))  # pytest runs with --import-mode=importlib
from masked import Detach, NoGrad, OneHot  # noqa: E402


class NaNOffGrid(NoGrad):
    """NaN logits on any input off the 1/255 pixel grid the data lies on (an adversarial input)."""

    def forward(self, x):
        z = self.net(x)
        off = ((x * 255 - (x * 255).round()).abs() > 1e-3).flatten(1).any(1)
        return torch.where(off[:, None], torch.full_like(z, float("nan")), z)


@pytest.mark.parametrize("wrapper", [NoGrad, Detach, OneHot])
def test_a_model_without_input_gradient_is_flagged_and_measured_by_square(trained_cnn, test_batch, wrapper):
    x, y = test_batch[0][:24], test_batch[1][:24]
    rep = advkit.evaluate(wrapper(trained_cnn), (x, y), attacks=["fgsm", "pgd-5"], eps=[0, 0.2, 0.3], probe=8,
                          queries=50, progress=False, device="cpu", examples=2)
    res = rep["model"]
    assert res.masked.keys() == {"fgsm", "pgd-5"} and all("gradient masking" in m for m in res.masked.values())
    assert res.names == ["square", "worst"] and set(rep.curve) == {"square", "worst"}
    assert "could not run (gradient masking)" in res.attacks["square"].note
    assert torch.equal(res.robust("worst"), res.robust("square"))  # masked attacks are not in the worst case
    accs = [a for _, a in rep.curve["worst"]]
    assert accs[-1] < accs[0]  # Square does attack: the worst case is a real upper bound, not clean accuracy
    checks = {c.name: c for c in rep.checks}
    for name in ("gradients", "gradient-free", "large-eps"):
        assert not checks[name].passed and "gradient masking" in checks[name].message, checks[name].message
    assert checks["finite-logits"].passed
    md, data = rep.markdown(), rep.to_dict()["models"]["model"]
    assert "Gradient masking on model: fgsm, pgd-5 could not run" in md
    assert "| fgsm | masked: could not run" in md and "| square | ran; added by the evaluation" in md
    assert set(data["masked"]) == {"fgsm", "pgd-5"} and set(data["curves"]) == {"square", "worst"}


def test_nan_logits_off_the_data_are_flagged(trained_cnn, test_batch):
    x, y = test_batch[0][:24], test_batch[1][:24]
    x = (x * 255).round() / 255  # on the grid: the clean inputs get finite logits
    rep = advkit.evaluate(NaNOffGrid(trained_cnn), (x, y), attacks=["fgsm"], eps=[0, 0.1], probe=8, queries=20,
                          progress=False, device="cpu", examples=0)
    check = {c.name: c for c in rep.checks}["finite-logits"]
    assert not check.passed and check.details["curves"] > 0 and check.details["checks"] > 0
    assert "NaN/Inf off the data manifold" in check.message
    plain = advkit.evaluate(trained_cnn, (x, y), attacks=["fgsm"], eps=[0, 0.1], probe=8, queries=20,
                            progress=False, device="cpu", examples=0)
    assert {c.name: c for c in plain.checks}["finite-logits"].passed


def test_nan_logits_on_clean_data_are_an_error(trained_cnn, test_batch):
    x, y = test_batch[0][:8], test_batch[1][:8]
    with pytest.raises(ValueError, match="NaN or Inf logits on 8 of 8 clean samples"):
        advkit.evaluate(NaNOffGrid(trained_cnn), (x * 0.999, y), attacks=["fgsm"], progress=False, device="cpu")


def test_a_transfer_attack_is_not_the_checks_gradient_free_attack():
    """A transfer curve searches the surrogate, not the model: the gradient-free check runs Square beside
    it, and a model whose gradients are masked still gets evaluate's Square curve."""
    torch.manual_seed(0)
    target, surrogate = (nn.Sequential(nn.Flatten(), nn.Linear(16, 5)).eval() for _ in range(2))
    x = torch.rand(24, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = target(x).argmax(1)
    transfer = advkit.attacks.Transfer(target, PGD(surrogate, steps=2))
    assert capability(transfer, "transfer") and not searches_the_model(transfer) and gradient_free(transfer)
    kw = {"eps": [0, 0.1, 0.3], "probe": 8, "queries": 20, "progress": False, "device": "cpu", "examples": 0}
    rep = advkit.evaluate(target, (x, y), {"fgsm": "fgsm", "transfer": transfer}, **kw)
    free = next(c for c in rep.checks if c.name == "gradient-free")
    assert free.message.startswith("Square (20 queries) at eps=") and "transfer" not in free.message
    masked = NoGrad(target)
    rep = advkit.evaluate(masked, (x, y), {"fgsm": "fgsm", "transfer": advkit.attacks.Transfer(masked, PGD(surrogate,
                          steps=2))}, checks=False, **kw)["model"]
    assert rep.attacks["fgsm"].masked and list(rep.ran) == ["transfer", "square"]
    assert "the gradient-free Square attack keeps the worst case an upper bound" in rep.attacks["square"].note

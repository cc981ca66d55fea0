"""evaluate(..., corruptions=...): accuracy per corruption and severity, equal to corrupting the batches
with advkit.defenses.corrupt and asking the model, reproducible under the seed, shown in report.md,
report.html and report.json, and absent (config included) when off."""
from __future__ import annotations

import json

import matplotlib.image
import pytest
import torch
from torch import nn

import advkit
from advkit.defenses import CORRUPTIONS, corrupt
from advkit.rng import batch_seed


class NearestMean(nn.Module):
    """A classifier with no training: the logit of class c is -||x - mean_c||^2 / 2 (up to a constant)."""

    def __init__(self, means: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(means[0].numel(), len(means))
        with torch.no_grad():
            self.linear.weight.copy_(means.flatten(1))
            self.linear.bias.copy_(-0.5 * means.flatten(1).pow(2).sum(1))

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def model(mnist5k):
    x, y = mnist5k[0].tensors
    return NearestMean(torch.stack([x[y == c].mean(0) for c in range(10)])).eval()


@pytest.fixture(scope="module")
def data(test_batch):
    return test_batch[0][:60], test_batch[1][:60]


OPTIONS = {"attacks": ["fgsm"], "eps": [0, 0.1], "progress": False, "checks": False, "device": "cpu", "examples": 2}


def direct(model, x, y, name, severity, seed, batch_size):
    """Accuracy under one corruption, batch by batch with corrupt and the documented per-batch seeds."""
    with torch.no_grad():
        right = [(model(corrupt(x[s:s + batch_size], name, severity, seed=batch_seed(seed, k))).argmax(1)
                  == y[s:s + batch_size]) for k, s in enumerate(range(0, len(x), batch_size))]
    return int(torch.cat(right).sum()) / len(x)


def test_accuracy_per_corruption_and_severity_is_that_of_the_corrupted_batches(model, data):
    x, y = data
    rep = advkit.evaluate(model, data, corruptions=True, batch_size=25, seed=3, **OPTIONS)
    assert list(rep.corruptions) == list(CORRUPTIONS)
    clean = rep["model"].clean_accuracy
    assert clean > 0.6  # a real classifier, so the corruptions have something to break
    for name, points in rep.corruptions.items():
        assert [s for s, _ in points] == [1, 2, 3, 4, 5]
        assert [a for _, a in points] == [direct(model, x, y, name, s, 3, 25) for s in range(1, 6)], name
    accuracies = [a for points in rep.corruptions.values() for _, a in points]
    assert min(accuracies) < clean - 0.2  # the strong severities do hurt
    assert rep.corruptions == rep["model"].corruption_accuracy()


def test_the_same_seed_gives_the_same_numbers_and_the_seed_is_used(model, data):
    names = ["gaussian-noise", "fog"]
    first = advkit.evaluate(model, data, corruptions=names, seed=5, **OPTIONS)
    again = advkit.evaluate(model, data, corruptions=names, seed=5, **OPTIONS)
    assert first.corruptions == again.corruptions
    for name in names:
        assert torch.equal(first["model"].corrupted[name], again["model"].corrupted[name])
    other = advkit.evaluate(model, data, corruptions=names, seed=6, **OPTIONS)
    assert any(not torch.equal(first["model"].corrupted[n], other["model"].corrupted[n]) for n in names)


def test_a_name_or_a_list_chooses_the_corruptions_in_order_without_repeats(model, data):
    assert list(advkit.evaluate(model, data, corruptions="jpeg", **OPTIONS).corruptions) == ["jpeg"]
    rep = advkit.evaluate(model, data, corruptions=["jpeg", "fog", "jpeg"], **OPTIONS)
    assert list(rep.corruptions) == ["jpeg", "fog"] and rep.config["corruptions"] == ["jpeg", "fog"]
    for off in (False, None, []):
        assert advkit.evaluate(model, data, corruptions=off, **OPTIONS).corruptions == {}


def test_several_models_each_carry_theirs(model, data):
    other = NearestMean(model.linear.weight.detach().view(10, 1, 28, 28).flip(-1))
    rep = advkit.evaluate({"a": model, "b": other}, data, corruptions=["contrast"], **OPTIONS)
    assert list(rep.corruptions) == ["a/contrast", "b/contrast"]
    assert rep.corruptions["a/contrast"] == rep["a"].corruption_accuracy()["contrast"]
    assert rep.corruptions["b/contrast"] == rep["b"].corruption_accuracy()["contrast"]
    assert rep.corruptions["a/contrast"] != rep.corruptions["b/contrast"]


def test_every_report_format_shows_them(model, data, tmp_path):
    rep = advkit.evaluate(model, data, corruptions=["fog", "contrast"], **OPTIONS)
    rep.save(tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["config"]["corruptions"] == ["fog", "contrast"] and list(saved["config"])[-1] == "corruptions"
    assert "corruptions.png" in saved["files"] and matplotlib.image.imread(tmp_path / "corruptions.png").ndim == 3
    points = saved["models"]["model"]["corruptions"]["fog"]
    assert [(p["severity"], p["accuracy"]) for p in points] == rep.corruptions["fog"]
    assert all(p["ci95"][0] <= p["accuracy"] <= p["ci95"][1] for p in points)
    mean = sum(a for pts in rep.corruptions.values() for _, a in pts) / 10
    assert saved["models"]["model"]["mean_corruption_accuracy"] == pytest.approx(mean)
    fog = " | ".join(f"{a:.1%}" for _, a in rep.corruptions["fog"])
    md = (tmp_path / "report.md").read_text()
    assert "### Accuracy under corruptions" in md and "![accuracy under corruptions](corruptions.png)" in md
    assert "| corruption | severity 1 | severity 2 | severity 3 | severity 4 | severity 5 | mean |" in md
    assert f"| fog | {fog} |" in md and "| mean | " in md and "Corruptions: fog, contrast; severities 1 to 5" in md
    page = (tmp_path / "report.html").read_text()
    assert "<h3>Accuracy under corruptions" in page and 'alt="accuracy under corruptions"' in page
    assert f"<td>fog</td><td>{fog.replace(' | ', '</td><td>')}</td>" in page


def test_off_the_report_is_as_before(model, data, tmp_path):
    rep = advkit.evaluate(model, data, **OPTIONS)
    assert rep.corruptions == {} and "corruptions" not in rep.config
    rep.save(tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "corruptions" not in saved["config"] and "corruptions" not in saved["models"]["model"]
    assert "corruptions.png" not in saved["files"] and not (tmp_path / "corruptions.png").exists()
    assert "corruption" not in (tmp_path / "report.md").read_text().lower()
    assert "corruption" not in (tmp_path / "report.html").read_text().lower()

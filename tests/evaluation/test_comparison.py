"""Before and after a defense in one report: every comparison number is the difference of the two
models' own numbers, every format shows it, and a report without a baseline stays as it was."""
from __future__ import annotations

import json

import matplotlib.image
import pytest
from torch import nn

import advkit
from advkit.evaluation import Comparison, Report

#: The module's tests share a heavy module-scoped fixture: one xdist worker runs them all (conftest.py).
pytestmark = pytest.mark.xdist_group("comparison")

CORRUPTIONS = ["gaussian-noise", "fog"]


@pytest.fixture(scope="module")
def models(trained_cnn):
    """The trained SmallCNN, and the same model behind a 5x5 blur: another clean accuracy and other
    robust accuracies, with no training."""
    return {"before": trained_cnn, "after": nn.Sequential(nn.AvgPool2d(5, stride=1, padding=2), trained_cnn).eval()}


@pytest.fixture(scope="module")
def compared(models, test_batch):
    x, y = test_batch[0][:64], test_batch[1][:64]
    return advkit.evaluate(models, (x, y), attacks=["fgsm", "pgd-5"], eps=[0, 0.1, 0.2], corruptions=CORRUPTIONS,
                           probe=16, queries=50, examples=2, progress=False, device="cpu", baseline="before")


def test_comparison_numbers_are_the_differences_of_each_models_numbers(compared):
    before, after = compared["before"], compared["after"]
    comparison = compared.comparisons["after"]
    assert list(compared.comparisons) == ["after"] and comparison.before is before and comparison.after is after
    assert before.clean_accuracy != after.clean_accuracy  # the test compares two different models
    assert comparison.clean_change == after.clean_accuracy - before.clean_accuracy
    assert comparison.attacks == ["fgsm", "pgd-5", "worst"]
    for attack in comparison.attacks:
        assert comparison.robust_gain(attack) == [a - b for a, b in zip(after.accuracy(attack),
                                                                        before.accuracy(attack), strict=True)]
    models = compared.to_dict()["models"]
    for name in CORRUPTIONS:
        own = [sum(p["accuracy"] for p in models[m]["corruptions"][name]) / 5 for m in ("before", "after")]
        assert comparison.corruption_accuracy(name) == pytest.approx(own, abs=1e-6)
    means = (models["before"]["mean_corruption_accuracy"], models["after"]["mean_corruption_accuracy"])
    assert comparison.mean_corruption_accuracy == means
    saved = compared.to_dict()["comparisons"]["after"]
    assert saved["clean_accuracy"]["change"] == comparison.clean_change
    assert saved["robust_accuracy"]["worst"]["gain"] == comparison.robust_gain()
    assert saved["corruption_accuracy"]["mean"]["gain"] == means[1] - means[0]


def test_every_format_shows_the_comparison(compared, tmp_path):
    html_path = compared.save(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["baseline"] == "before" and set(data["comparisons"]) == {"after"}
    assert data["files"][:3] == ["curve.png", "corruptions.png", "comparison.png"]
    assert matplotlib.image.imread(tmp_path / "comparison.png").ndim == 3
    comparison = compared.comparisons["after"]
    b, a = compared["before"].accuracy("pgd-5")[1], compared["after"].accuracy("pgd-5")[1]
    cell = f"{b:.1%} → {a:.1%} ({100 * (a - b):+.1f})"
    clean = f"{100 * comparison.clean_change:+.1f}"
    md = (tmp_path / "report.md").read_text()
    assert "## Before and after: before → after" in md and "![before and after](comparison.png)" in md
    assert cell in md and f"| clean accuracy | {compared['before'].clean_accuracy:.1%} |" in md
    assert md.index("## Before and after") < md.index("## before: clean accuracy")
    assert "| gaussian-noise |" in md.split("## before: clean accuracy")[0]
    page = html_path.read_text()
    assert "<h2>Before and after: before → after</h2>" in page and f"<td>{cell}</td>" in page
    assert f"<td>{clean}</td>" in page and 'alt="before and after"' in page


def test_without_a_baseline_the_report_has_no_comparison(models, test_batch, tmp_path):
    x, y = test_batch[0][:16], test_batch[1][:16]
    plain = advkit.evaluate(models, (x, y), attacks=["fgsm"], eps=[0, 0.1], checks=False, examples=0,
                            progress=False, device="cpu")
    plain.save(tmp_path)
    assert plain.comparisons == {} and plain.baseline is None
    data = json.loads((tmp_path / "report.json").read_text())
    assert "comparisons" not in data and "baseline" not in data and "comparison.png" not in data["files"]
    assert "Before and after" not in (tmp_path / "report.md").read_text()


def test_baseline_must_name_one_of_several_models_on_the_same_samples(models, test_batch):
    x, y = test_batch[0][:16], test_batch[1][:16]
    kwargs = {"attacks": ["fgsm"], "eps": [0, 0.1], "checks": False, "examples": 0, "progress": False, "device": "cpu"}
    with pytest.raises(ValueError, match=r"baseline must name one of the models \('before', 'after'\), got 'base'"):
        advkit.evaluate(models, (x, "not even data"), baseline="base", **kwargs)  # before reading the data
    with pytest.raises(ValueError, match="needs at least one other model"):
        advkit.evaluate(models["before"], (x, y), baseline="model", **kwargs)
    first = advkit.evaluate(models["before"], (x, y), **kwargs)
    merged = Report.compare({"standard": first, "blurred": advkit.evaluate(models["after"], (x, y), **kwargs)},
                            baseline="standard")
    assert isinstance(merged.comparisons["blurred"], Comparison) and merged.baseline == "standard"
    other_samples = advkit.evaluate(models["after"], (x.flip(0), y.flip(0)), **kwargs)
    with pytest.raises(ValueError, match="evaluated on other samples"):
        Report.compare({"standard": first, "blurred": other_samples}, baseline="standard")

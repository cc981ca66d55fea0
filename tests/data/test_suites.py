"""The standard corruption suites (advkit.data.suites): ImageNet-C through imagecorruptions (seeded, the caller's
numpy RNG untouched, equal to the package on the deterministic corruptions, grayscale and tiny images handled or
refused), CIFAR-10-C files read by index (row (severity - 1) * n + i), the corruption error's arithmetic, and the
suites inside evaluate and its report (md, html, json) and CLI option."""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys

import numpy as np
import pytest
import torch
from torch import nn

import advkit
from advkit.app.evaluate_cli import corruption_names
from advkit.data import CorruptionFiles, ErrorTable, ImageNetC
from advkit.data.corruption_accuracy import corruption_accuracy
from advkit.data.suites import ALEXNET_IMAGENET_C, IMAGENET_C, corruption_errors, imagenet_c, mean_corruption_error
from advkit.evaluation.options import EvaluationOptions
from advkit.rng import batch_seed

OPTIONS = {"attacks": ["fgsm"], "eps": [0, 0.1], "progress": False, "checks": False, "device": "cpu", "examples": 0}


def images(n: int = 4, channels: int = 3, side: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, channels, side, side), generator=torch.Generator().manual_seed(seed))


class RaiseOnCall(nn.Module):
    def forward(self, x):
        raise AssertionError("the model ran")


@pytest.fixture(scope="module")
def package():
    return pytest.importorskip("imagecorruptions")


# -- ImageNet-C through imagecorruptions ------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_images_and_another_seed_others(package):
    x = images()
    for name in ("gaussian_noise", "impulse_noise"):  # impulse_noise draws from a seed the package is handed
        first = imagenet_c(x, name, 3, seed=7)
        assert torch.equal(first, imagenet_c(x, name, 3, seed=7)), name
        assert not torch.equal(first, imagenet_c(x, name, 3, seed=8)), name
        assert first.shape == x.shape and first.dtype == x.dtype and 0 <= first.min() <= first.max() <= 1
        assert (first - x).abs().mean() > 0.02, name  # it did corrupt


def test_the_callers_numpy_rng_is_left_as_it_was(package):
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    imagenet_c(images(), "gaussian_noise", 2, seed=0)
    assert np.array_equal(np.random.rand(3), expected)


def test_a_deterministic_corruption_equals_the_package_on_the_uint8_images(package):
    x = images(3)
    uint8 = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    expected = np.stack([package.corrupt(im, severity=4, corruption_name="contrast") for im in uint8])
    assert torch.equal(imagenet_c(x, "contrast", 4, seed=0), torch.from_numpy(expected).permute(0, 3, 1, 2) / 255)


def test_grayscale_images_are_corrupted_as_three_equal_channels_and_keep_one(package):
    gray = images(2, channels=1)
    out = imagenet_c(gray, "contrast", 2, seed=0)
    assert out.shape == gray.shape
    assert torch.equal(out, imagenet_c(gray.expand(-1, 3, -1, -1), "contrast", 2, seed=0)[:, :1])


@pytest.mark.parametrize(("x", "name", "severity", "message"), [
    (images(side=28), "fog", 1, "ImageNet-C's corruptions need images of at least 32x32 pixels (the reference code's "
                                "minimum); got 28x28: resize the images first"),
    (images(channels=2), "fog", 1, "x must be images (N, C, H, W) with 1 or 3 channels for ImageNet-C; got shape "
                                   "(4, 2, 32, 32)"),
    (images(), "rain", 1, "name must be an ImageNet-C corruption"),
    (images(), "fog", 0, "severity must be one of 1, 2, 3, 4, 5; got 0"),
])
def test_what_the_reference_code_cannot_take_is_refused_before_any_work(x, name, severity, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        imagenet_c(x, name, severity)


def test_evaluate_refuses_images_imagenet_c_cannot_take_before_a_model_runs(package):
    model = nn.Sequential(RaiseOnCall(), nn.Flatten(), nn.Linear(3 * 28 * 28, 3))
    with pytest.raises(ValueError, match="ImageNet-C's corruptions need images of at least 32x32 pixels"):
        advkit.evaluate(model, (torch.rand(2, 3, 28, 28), torch.tensor([0, 1])), corruptions="imagenet-c", **OPTIONS)


def test_imagenet_c_by_name_in_evaluate_equals_the_batches_corrupted_directly(package):
    x, y = images(10, seed=1), torch.arange(10) % 3
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)).eval()
    suite = ImageNetC(["gaussian_noise"])
    report = advkit.evaluate(model, (x, y), corruptions=suite, batch_size=4, seed=2, **OPTIONS)
    with torch.no_grad():
        direct = [[int((model(imagenet_c(x[s:s + 4], "gaussian_noise", sev, seed=batch_seed(2, k))).argmax(1)
                        == y[s:s + 4]).sum()) for k, s in enumerate(range(0, 10, 4))] for sev in range(1, 6)]
    assert report.corruptions == {"gaussian_noise": [(s + 1, sum(d) / 10) for s, d in enumerate(direct)]}
    assert report.config["corruption_suite"] == "imagenet-c"
    assert EvaluationOptions(corruptions="imagenet-c").corruptions == IMAGENET_C


# -- CIFAR-10-C files -------------------------------------------------------------------------------------------
PER_SEVERITY = 6


def write_files(root, names=("fog", "contrast"), labels=None):
    """A fake CIFAR-10-C: 5 x PER_SEVERITY rows whose pixel (0, 0, 0) holds the row's number."""
    folder = root / "CIFAR-10-C"
    folder.mkdir()
    labels = np.arange(PER_SEVERITY) % 3 if labels is None else labels
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.int64))
    for k, name in enumerate(names):
        data = np.full((5 * PER_SEVERITY, 32, 32, 3), 40 * k % 256, dtype=np.uint8)
        data[:, 0, 0, 0] = np.arange(5 * PER_SEVERITY)
        np.save(folder / f"{name}.npy", data)
    return torch.as_tensor(labels)


def test_sample_i_at_a_severity_is_row_severity_minus_one_times_n_plus_i(tmp_path):
    write_files(tmp_path)
    suite = CorruptionFiles("cifar10-c", tmp_path, ["fog", "contrast"])
    index = torch.tensor([4, 0, 5])
    for severity in (1, 3, 5):
        out = suite.apply(torch.zeros(3, 3, 32, 32), "fog", severity, seed=0, index=index)
        assert (out[:, 0, 0, 0] * 255).round().long().tolist() == ((severity - 1) * PER_SEVERITY + index).tolist()
    assert suite.apply(torch.zeros(1, 3, 32, 32), "contrast", 1, seed=0, index=index[:1])[0, 1, 5, 5] == 40 / 255
    assert isinstance(suite.array("fog"), np.memmap)  # memory-mapped: a batch reads its rows only


def test_files_in_evaluate_give_each_samples_own_rows_at_any_batch_size(tmp_path):
    y = write_files(tmp_path)
    x = torch.rand(PER_SEVERITY, 3, 32, 32)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)).eval()
    suite = CorruptionFiles("cifar10-c", tmp_path, ["fog"])
    rows = torch.from_numpy(np.array(suite.array("fog"))).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = (model(rows).argmax(1) == y.repeat(5)).view(5, PER_SEVERITY).T
    for batch_size in (2, 4):
        got = corruption_accuracy(model, x, y, ["fog"], batch_size=batch_size, suite=suite)["fog"]
        assert torch.equal(got, expected)
    report = advkit.evaluate(model, (x, y), corruptions=suite, batch_size=4, **OPTIONS)
    assert torch.equal(report["model"].corrupted["fog"], expected)


def test_files_refuse_shuffled_data_missing_files_and_too_many_samples(tmp_path):
    y = write_files(tmp_path)
    suite = CorruptionFiles("cifar10-c", tmp_path, ["fog"])
    with pytest.raises(ValueError, match=re.escape("data labels differ from cifar10-c's labels.npy: sample 0 is "
                                                   "labelled 2 in the data, 0 in the files")):
        suite.check_labels(y.roll(1), torch.arange(PER_SEVERITY))
    with pytest.raises(ValueError, match=re.escape(f"cifar10-c holds {PER_SEVERITY} images per severity")):
        suite.rows(1, torch.tensor([PER_SEVERITY]))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    for x, labels, message in [(torch.rand(2, 3, 28, 28), y[:2], "cifar10-c's images have shape (3, 32, 32); the "
                                "data's (3, 28, 28)"), (torch.rand(3, 3, 32, 32), y[1:4], "sample 0 is labelled 1")]:
        with pytest.raises(ValueError, match=re.escape(message)):  # by evaluate, before a model runs
            advkit.evaluate(nn.Sequential(RaiseOnCall(), model), (x, labels), corruptions=suite, **OPTIONS)
    with pytest.raises(FileNotFoundError, match=re.escape("cifar10-c: missing snow.npy")):
        CorruptionFiles("cifar10-c", tmp_path, ["snow"])
    with pytest.raises(FileNotFoundError, match=re.escape("cifar100-c: no folder")):
        CorruptionFiles("cifar100-c", tmp_path)
    with pytest.raises(ValueError, match=re.escape("corruptions='cifar10-c' reads files: pass "
                                                   "advkit.data.CorruptionFiles('cifar10-c', root)")):
        EvaluationOptions(corruptions="cifar10-c")


def test_options_keep_the_suite_through_replace_as_evaluate_does_under_torchrun(tmp_path):
    write_files(tmp_path)
    options = EvaluationOptions(corruptions=CorruptionFiles("cifar10-c", tmp_path, ["contrast", "fog"]))
    again = dataclasses.replace(options, progress=False)
    assert again.suite is options.suite and again.corruptions == ("contrast", "fog")


# -- the corruption error ---------------------------------------------------------------------------------------
def test_corruption_error_divides_the_errors_summed_over_severities():
    errors = {"fog": [0.1, 0.2, 0.3, 0.4, 0.5], "snow": [0.5] * 5, "frost": [0.2] * 5}
    table = ErrorTable("ref", {"fog": [0.2, 0.4, 0.6, 0.8, 1.0], "snow": 0.25, "frost": 0.0})
    ces = corruption_errors(errors, table)
    assert ces == {"fog": pytest.approx(0.5), "snow": pytest.approx(2.0), "frost": None}
    assert mean_corruption_error({"fog": 0.5, "snow": 2.0}) == pytest.approx(1.25)
    assert mean_corruption_error(ces) is None
    assert corruption_errors({"fog": [0.3, 0.3]}, {"fog": [0.1, 0.5]}) == {"fog": pytest.approx(1.0)}
    alexnet = {c: [e] * 5 for c, (e,) in ALEXNET_IMAGENET_C.errors.items()}  # AlexNet against itself: mCE 1
    assert list(alexnet) == list(IMAGENET_C)
    assert mean_corruption_error(corruption_errors(alexnet, ALEXNET_IMAGENET_C)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=re.escape("ErrorTable 'x': the errors of 'fog' must be one mean error or 5")):
        ErrorTable("x", {"fog": [0.1, 0.2]})


def test_the_report_shows_ce_per_corruption_in_md_html_and_json(tmp_path):
    y = write_files(tmp_path)
    x = torch.rand(PER_SEVERITY, 3, 32, 32)
    torch.manual_seed(0)
    models = {"before": nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)).eval(),
              "after": nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)).eval()}
    reference = ErrorTable("ref", {"fog": 0.5, "contrast": [0.2, 0.4, 0.6, 0.8, 1.0]})
    suite = CorruptionFiles("cifar10-c", tmp_path, ["fog", "contrast"], baseline=reference)
    report = advkit.evaluate(models, (x, y), corruptions=suite, baseline="before", **OPTIONS)
    before, after = report["before"], report["after"]
    errors = {name: [1 - a for _, a in points] for name, points in before.corruption_accuracy().items()}
    ces = {"fog": sum(errors["fog"]) / 2.5, "contrast": sum(errors["contrast"]) / 3.0}
    assert before.corruption_errors() == pytest.approx(ces)
    saved = json.loads((report.save(tmp_path / "report").parent / "report.json").read_text())
    model = saved["models"]["before"]
    assert model["corruption_suite"] == "cifar10-c" and model["corruption_baseline"] == "ref"
    assert model["corruption_errors"] == pytest.approx(ces)
    assert model["mean_corruption_error"] == pytest.approx((ces["fog"] + ces["contrast"]) / 2)
    relative = {c: sum(1 - a for _, a in after.corruption_accuracy()[c]) / sum(errors[c]) for c in errors}
    assert saved["comparisons"]["after"]["corruption_error"] == pytest.approx(
        {**relative, "mean": sum(relative.values()) / 2})
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| severity 4 | severity 5 | mean | CE vs ref |" in markdown
    assert f"| fog | {' | '.join(f'{1 - e:.1%}' for e in errors['fog'])} | " in markdown
    assert f" {ces['contrast']:.1%} |" in markdown and "Corruptions (cifar10-c): fog, contrast" in markdown
    assert "| corruption | before | after | change | CE |" in markdown
    page = (tmp_path / "report" / "report.html").read_text()
    assert "CE vs ref" in page and f"{ces['fog']:.1%}" in page


def test_the_cli_option_takes_a_suite(tmp_path):
    write_files(tmp_path, names=IMAGENET_C)
    assert corruption_names("imagenet-c") == "imagenet-c"
    files = corruption_names(f"cifar10-c={tmp_path}")
    assert isinstance(files, CorruptionFiles) and files.corruptions == IMAGENET_C
    with pytest.raises(argparse.ArgumentTypeError, match="cifar100-c: no folder"):
        corruption_names(f"cifar100-c={tmp_path}")
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape("cifar10-c reads the official files: give their "
                                                                   "root, cifar10-c=ROOT")):
        corruption_names("cifar10-c")


def test_without_imagecorruptions_the_suite_is_refused_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)
    with pytest.raises(ImportError, match=re.escape("ImageNet-C corruptions need the imagecorruptions package: pip "
                                                    "install 'advkit[corruptions]'")):
        EvaluationOptions(corruptions="imagenet-c")

"""evaluate's options are one object: built and checked once, before any data is read or a model
runs, passed down to the curves and the checks, and recorded as the report's config."""
from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import advkit
from advkit.evaluation.checks import CHECKS
from advkit.evaluation.options import EvaluationOptions

evaluate_module = importlib.import_module("advkit.evaluation.evaluate")  # the package's `evaluate` is the function


class Untouchable(nn.Module):
    """A model that must not run."""

    def forward(self, x):
        raise AssertionError("the model ran")


class Unread(Dataset):
    """A dataset that must not be read."""

    def __len__(self):
        raise AssertionError("the data was read")

    def __getitem__(self, i):
        raise AssertionError("the data was read")


BAD = [({"norm": "l3"}, ValueError, "norm must be one of 'linf', 'l2', 'l1'; got 'l3'"),
       ({"eps": [0, -0.1]}, ValueError, "eps must be finite and >= 0, got -0.1"),
       ({"eps": "0.1"}, ValueError, "eps must be a number or a non-empty list"),
       ({"attacks": ["nope"]}, ValueError, "unknown attack 'nope'"),
       ({"batch_size": 0}, ValueError, r"batch_size and n must be >= 1, probe and examples >= 0; got 0, None, 100, 8"),
       ({"n": 0, "probe": 5}, ValueError, r"batch_size and n must be >= 1, probe and examples >= 0; got 256, 0, 5, 8"),
       ({"examples": -1}, ValueError, r"got 256, None, 100, -1"),
       ({"corruptions": ["fog", "smog"]}, ValueError, "corruptions: unknown corruption 'smog'; choose from "
        "gaussian-noise, gaussian-blur, fog, contrast, brightness, pixelate, jpeg, affine"),
       ({"corruptions": 1}, TypeError, "corruptions must be True, False, a list of corruption names, 'imagenet-c' or "
        "a CorruptionSuite, got int")]


@pytest.mark.parametrize(("bad", "error", "message"), BAD)
def test_a_bad_option_fails_before_the_data_or_the_model(bad, error, message):
    with pytest.raises(error, match=message):
        advkit.evaluate(Untouchable(), Unread(), progress=False, device="cpu", **bad)
    with pytest.raises(error, match=message):
        EvaluationOptions(**bad)
    with pytest.raises(error, match=message):  # changing a built object checks again
        dataclasses.replace(EvaluationOptions(device="cpu"), **bad)


def test_options_are_normalised_and_read_only():
    options = EvaluationOptions(attacks="pgd-3", eps=[0.2, 0, 0.1, 0.2], device="cpu")
    assert options.eps == (0.0, 0.1, 0.2) and [s.name for s in options.attacks] == ["pgd-3"]
    assert options.device == torch.device("cpu")
    assert dataclasses.replace(options, probe=7).attacks == options.attacks  # resolved attacks are kept as they are
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.seed = 1


def test_evaluate_takes_every_option_with_the_same_default():
    """evaluate's keywords are the options (besides the model, the data and the baseline the report compares
    the other models with), with the options' defaults."""
    parameters = dict(inspect.signature(advkit.evaluate).parameters)
    assert [parameters.pop(p).name for p in ("model", "data", "baseline")] == ["model", "data", "baseline"]
    assert {name: p.default for name, p in parameters.items()} == \
        {f.name: f.default for f in dataclasses.fields(EvaluationOptions) if f.init}


def test_the_options_are_built_once_and_the_report_records_them(monkeypatch):
    torch.manual_seed(0)
    models = {"a": nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), "b": nn.Sequential(nn.Flatten(), nn.Linear(16, 3))}
    x, y = torch.rand(12, 1, 4, 4), torch.arange(12) % 3
    given = {"attacks": {"one": "fgsm", "two": "pgd-2"}, "eps": [0.05, 0], "norm": "linf", "n": 10, "batch_size": 4,
             "seed": 3, "survivors": False, "warm_start": False, "probe": 6, "queries": 7}
    built, seen = [], []
    post_init, run_checks = EvaluationOptions.__post_init__, evaluate_module.run_checks

    def counted_post_init(self):
        built.append(self)
        post_init(self)

    def recorded_run_checks(*args, **kwargs):
        seen.append(args[-1])
        return run_checks(*args, **kwargs)

    monkeypatch.setattr(EvaluationOptions, "__post_init__", counted_post_init)
    monkeypatch.setattr(evaluate_module, "run_checks", recorded_run_checks)
    rep = advkit.evaluate(models, (x, y), device="cpu", progress=False, examples=2, **given)
    assert len(built) == 1 and seen == [built[0], built[0]]  # one object, read by both models' checks
    assert len(rep.checks) == 2 * len(CHECKS)
    expected = {**given, "attacks": ["one", "two"], "eps": [0.0, 0.05]}
    assert list(rep.config) == list(expected) and rep.config == expected
    assert rep.config == built[0].config(samples=10)
    assert rep.to_dict()["config"] == expected and rep.to_dict()["seed"] == 3

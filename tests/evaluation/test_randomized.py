"""Randomized models: the randomness measure tells a noisy model from a deterministic one, evaluate flags
it and runs EOT attacks on it by default, and "autoattack-rand" is the official rand version."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import FGSM, AutoAttack
from advkit.attacks.autoattack import RAND_EOT, rand
from advkit.defenses import GaussianNoise
from advkit.evaluation.checks import RANDOM_TOLERANCE, randomness
from advkit.evaluation.specs import resolve, valid_names


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 5)).eval()


def Noisy(sigma: float = 0.05) -> nn.Module:  # noqa: N802 (a model, named as one)
    """:func:`net` behind Gaussian noise on the input in every forward (eval mode included)."""
    return nn.Sequential(GaussianNoise(sigma), net())


def data(n: int = 24):
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    return x, net()(x).argmax(1)


def test_randomness_tells_a_noisy_model_from_a_deterministic_one():
    x, _ = data()
    assert randomness(net(), x, 8, "cpu") <= RANDOM_TOLERANCE
    assert randomness(Noisy(), x, 8, "cpu") > RANDOM_TOLERANCE


def test_evaluate_flags_a_randomized_model_and_runs_eot_attacks():
    x, y = data()
    kw = {"attacks": ["fgsm", "apgd-3"], "eps": [0, 0.1], "probe": 8, "queries": 20, "progress": False,
          "device": "cpu", "examples": 0}
    noisy = advkit.evaluate(Noisy(), (x, y), **kw)["model"]
    check = next(c for c in noisy.checks if c.name == "randomized")
    assert check.details["randomized"] and "autoattack-rand" in check.message and "eot=20" in check.message
    assert check.passed  # every gradient attack ran with EOT: nothing single-draw left to flag
    assert all(f"averaged over {RAND_EOT} forwards" in rec.note for rec in noisy.attacks.values())
    plain = advkit.evaluate(net(), (x, y), checks=False, **kw)["model"]
    assert all(rec.note == "" for rec in plain.attacks.values())


def test_the_check_fails_single_draw_attacks_on_a_randomized_model():
    from advkit.evaluation.checks import run_checks
    from advkit.evaluation.options import EvaluationOptions
    x, y = data()
    model = Noisy()
    res = advkit.evaluate(model, (x, y), attacks=["fgsm"], eps=[0, 0.1], checks=False, progress=False,
                          device="cpu", examples=0)["model"]
    opts = EvaluationOptions(norm="linf", probe=8, batch_size=64, device="cpu", progress=False)
    check = run_checks(res, model, {"fgsm": FGSM(model, 0.1)}, x, y, opts)[0]
    assert check.name == "randomized" and not check.passed
    assert "single-draw gradient attacks here: fgsm" in check.message


def test_autoattack_rand_is_a_name_and_the_rand_version():
    assert "autoattack-rand" in valid_names()
    (spec,) = resolve(["autoattack-rand"])
    attack = spec.build(net(), "linf", 5)
    assert isinstance(attack, AutoAttack) and attack.version == "rand"
    assert [c.name for c in attack.components] == ["apgd-ce", "apgd-dlr"]
    assert all(c.attack.eot == RAND_EOT and c.attack.steps == 100 and c.attack.restarts == 1 for c in attack.components)
    with pytest.raises(ValueError, match="version must be one of 'standard', 'rand'"):
        AutoAttack(net(), version="plus")


def test_the_rand_version_has_the_official_components_and_budgets():
    official = pytest.importorskip("pyautoattack")
    ref = official.AutoAttack(net(), norm="Linf", eps=0.1, version="rand", device="cpu")
    assert [name for name, _, _ in rand()] == ref.attacks_to_run
    for name, _, settings in rand():
        assert settings["loss"] == name.removeprefix("apgd-")
        assert (settings["steps"], settings["restarts"], settings["eot"], settings["rho"]) == (
            ref.apgd.n_iter, ref.apgd.n_restarts, ref.apgd.eot_iter, ref.apgd.thr_decr)

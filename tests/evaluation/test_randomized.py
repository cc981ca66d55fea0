"""Randomized models: the randomness measure tells a noisy model from a deterministic one, evaluate flags
it and runs EOT attacks on it by default, and "autoattack-rand" is the official rand version."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import FGSM, PGD, AutoAttack, Square
from advkit.attacks.autoattack import RAND_EOT, rand
from advkit.data import Samples
from advkit.defenses import GaussianNoise
from advkit.evaluation.batched import Reader
from advkit.evaluation.checks import RANDOM_TOLERANCE, randomness
from advkit.evaluation.evaluate import with_eot
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
    read, rows = Reader(Samples(data())), torch.arange(24)
    assert randomness(net(), read, rows, 8, "cpu") <= RANDOM_TOLERANCE
    assert randomness(Noisy(), read, rows, 8, "cpu") > RANDOM_TOLERANCE


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
    check = run_checks(res, model, {"fgsm": FGSM(model, 0.1)}, Reader(Samples((x, y))), opts)[0]
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


def test_eot_1_runs_the_standard_attacks_and_the_report_still_names_the_randomized_model():
    x, y = data()
    res = advkit.evaluate(Noisy(), (x, y), attacks=["fgsm", "apgd-2"], eps=[0, 0.1], probe=8, queries=20,
                          progress=False, device="cpu", examples=0, eot=1)
    model = res["model"]
    assert "eot=" not in model.attacks["apgd-2"].description and res.config["eot"] == 1
    fgsm = model.attacks["fgsm"].costs[1]
    assert fgsm.backwards == fgsm.attacked  # one draw per gradient
    assert all("follows single draws and overstates robustness" in rec.note for rec in model.attacks.values())
    check = next(c for c in model.checks if c.name == "randomized")
    assert check.details["randomized"] and not check.passed
    assert "single-draw gradient attacks here: fgsm, apgd-2" in check.message


def test_eot_sets_the_draws_of_every_attack_that_averages_gradients_on_a_deterministic_model():
    x, y = data()
    model = net()
    square = Square(model, 0.1, n_queries=5)
    res = advkit.evaluate(model, (x, y), attacks={"fgsm": "fgsm", "apgd": "apgd-2", "square": square}, eps=[0, 0.1],
                          checks=False, progress=False, device="cpu", examples=0, eot=5)["model"]
    fgsm, apgd = res.attacks["fgsm"], res.attacks["apgd"]
    assert "eot=5" in fgsm.description and "eot=5" in apgd.description
    assert fgsm.note == "eot=5 given: each gradient averaged over 5 forwards"
    assert fgsm.costs[1].backwards == 5 * fgsm.costs[1].attacked  # one step, five draws
    assert res.attacks["square"].note == "" and square.eot == 1
    pgd = PGD(net(), 0.1, steps=2, eot=3)
    attacks, notes = with_eot({"pgd": pgd, "autoattack": AutoAttack(net(), 0.1)}, 5, randomized=False)
    assert attacks["pgd"].eot == 5 and pgd.eot == 3  # a copy: the object passed is left as it is
    auto = attacks["autoattack"]
    assert auto.version == "rand" and [c.attack.eot for c in auto.components] == [5, 5]
    assert "rand version (APGD-CE and APGD-DLR, eot=5)" in notes["autoattack"]
    one, _ = with_eot({"autoattack": auto}, 1, randomized=False)  # the rand version kept, at single draws
    assert [c.attack.eot for c in one["autoattack"].components] == [1, 1] and auto.components[0].attack.eot == 5


@pytest.mark.parametrize("eot,error,message", [
    (0, ValueError, "eot must be a finite integer >= 1, got 0"),
    (2.5, TypeError, "eot must be an integer, got float 2.5"),
    ("20", TypeError, "eot must be an integer, got str '20'"),
    (True, TypeError, "eot must be an integer, got bool True"),
])
def test_evaluate_refuses_a_bad_eot_before_any_work(eot, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        advkit.evaluate(net(), ("not", "data"), eot=eot)

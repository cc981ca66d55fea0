"""Settings and odd-but-legal inputs: step sizes, decays and counts are validated with messages
that name the argument; float64/float16 inputs and numpy labels work; DLR refuses models with
fewer than 3 classes; reprs say what runs; results print as a summary; long attacks show progress."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import advkit.progress
from advkit.attacks import APGD, APGDT, ATTACKS, CW, FGSM, MIFGSM, PGD, AttackResult, Square
from advkit.core import L2Step, MomentumStep, SignStep

NAN, INF = float("nan"), float("inf")


def net(classes: int = 10) -> nn.Module:
    torch.default_generator.manual_seed(0)  # the CPU generator alone: see test_guarantees.tiny_model
    return nn.Sequential(nn.Flatten(), nn.Linear(64, classes)).eval()


def batch(n: int = 6):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 10


BAD_SETTINGS = [
    (PGD, "alpha", [NAN, INF, 0.0, -0.1]), (PGD, "steps", [0, 2.5, NAN]), (PGD, "restarts", [0, -1]),
    (MIFGSM, "alpha", [NAN, -1.0, 0.0]), (MIFGSM, "decay", [NAN, INF, -0.5]), (MIFGSM, "steps", [0]),
    (CW, "lr", [NAN, 0.0, -1.0]), (CW, "c", [NAN, INF, 0.0]), (CW, "kappa", [NAN, INF, -1.0]),
    (CW, "steps", [0]), (CW, "binary_steps", [0, 1.5]),
    (APGD, "steps", [0, NAN]), (APGD, "restarts", [0]), (APGD, "rho", [NAN, -0.1, 1.5]),
    (APGDT, "n_target_classes", [0, NAN]),
    (Square, "p_init", [NAN, 0.0, -0.2, 1.5]), (Square, "n_queries", [0, 10.5]),
]


@pytest.mark.parametrize("cls,arg,values", BAD_SETTINGS, ids=[f"{c.__name__}-{a}" for c, a, _ in BAD_SETTINGS])
def test_bad_step_sizes_decays_and_counts_raise_naming_the_argument(cls, arg, values):
    for value in values:
        with pytest.raises((ValueError, TypeError), match=rf"^{arg} must be"):
            cls(net(), eps=0.1, **{arg: value})


def test_nan_alpha_no_longer_reports_nan_images_as_success():
    with pytest.raises(ValueError, match="alpha must be a finite number > 0, got nan"):
        PGD(net(), eps=0.1, alpha=NAN)


@pytest.mark.parametrize("make", [SignStep, L2Step, MomentumStep])
def test_core_step_rules_reject_bad_step_sizes(make):
    for value in (NAN, INF, 0.0, -1.0):
        with pytest.raises(ValueError, match="alpha must be"):
            make(value)
    with pytest.raises(ValueError, match="decay must be"):
        MomentumStep(0.1, decay=NAN)
    make(torch.full((3,), 0.1))  # per-sample step sizes are the caller's to keep valid


def test_zero_decay_is_legal_and_means_no_momentum():
    assert MIFGSM(net(), eps=0.1, decay=0.0).decay == 0.0


# -- dtypes and labels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_float64_and_float16_inputs_run_in_the_model_dtype_and_come_back_in_theirs(name, dtype):
    model = net()
    cls = ATTACKS[name]
    cheap = {k: v for k, v in {"steps": 3, "n_queries": 20, "binary_steps": 1}.items()
             if k in cls.__init__.__code__.co_varnames}
    norm = "linf" if "linf" in cls.norms else "l2"
    eps = 0.1 if norm == "linf" else 1.0
    x, y = batch()
    x = x.to(dtype)
    res = cls(model, eps=eps, norm=norm, **cheap).run(x, y)
    assert res.x_adv.dtype == dtype and torch.isfinite(res.x_adv).all()
    assert 0 <= float(res.x_adv.min()) and float(res.x_adv.max()) <= 1
    resolution = torch.finfo(dtype).eps  # the ball holds up to the rounding of x's own dtype
    delta = (res.x_adv - x).double().flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps * (1 + resolution) + resolution).all())
    with torch.no_grad():  # success is that of the returned tensor, as the model sees it
        assert torch.equal(res.success, model(res.x_adv.float()).argmax(1) != y)


def test_float64_apgd_matches_float32_apgd():
    """APGD used to crash in index_put on float64 inputs; now it runs in float32 like the model."""
    x, y = batch()
    atk = APGD(net(), eps=0.1, steps=5)
    res64, res32 = atk.run(x.double(), y), atk.run(x, y)
    assert torch.allclose(res64.x_adv.float(), res32.x_adv, atol=1e-6)
    assert torch.equal(res64.success, res32.success)


def test_untouched_float64_rows_come_back_exactly():
    x = batch()[0].double()
    assert torch.equal(PGD(net(), eps=0.1, steps=2).run(x, eps=0.0).x_adv, x)


def test_numpy_labels_and_targets_are_accepted():
    x, y = batch()
    atk = PGD(net(), eps=0.1, steps=3)
    assert torch.equal(atk(x, y.numpy()), atk(x, y))
    target = (y + 1) % 10
    assert torch.equal(atk(x, y.numpy(), target.numpy().astype(np.int32)), atk(x, y, target))
    with pytest.raises(TypeError, match="y must hold integer class indices"):
        atk(x, y.numpy().astype(np.float32))


DLR_ATTACKS = {"apgd-dlr": lambda m: APGD(m, eps=0.1, steps=2, loss="dlr"),
               "apgd-t": lambda m: APGDT(m, eps=0.1, steps=2),
               "pgd-dlr": lambda m: PGD(m, eps=0.1, steps=2, loss="dlr")}


@pytest.mark.parametrize("name", sorted(DLR_ATTACKS))
def test_dlr_on_fewer_than_3_classes_is_a_clear_error(name):
    x = batch()[0]
    with pytest.raises(ValueError, match=r"loss='dlr' needs at least 3 classes.*use loss='ce' or loss='margin'"):
        DLR_ATTACKS[name](net(2)).run(x, torch.zeros(len(x), dtype=torch.long))


def test_dlr_runs_on_3_classes():
    """Three classes are enough for DLR (its denominator needs the third-largest logit): the attack
    runs, stays in the ball and fools some of the correctly classified samples (measured: 2 of 5)."""
    x, y, model = batch()[0], torch.arange(6) % 3, net(3)
    res = APGD(model, eps=0.1, steps=2, loss="dlr").run(x, y)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
        assert torch.equal(res.success, model(res.x_adv).argmax(1) != y)
    assert float((res.x_adv - x).abs().max()) <= 0.1 + 1e-6 and res.backwards > 0
    assert bool((res.success & correct).any())


# -- what prints -------------------------------------------------------------------------------------------
def test_reprs_show_steps_and_step_sizes():
    m = net()
    assert repr(PGD(m, eps=0.3, steps=40)) == ("PGD(eps=0.3, norm='linf', steps=40, alpha=0.01875 (2.5·eps/steps), "
                                               "random_start=True, restarts=1, loss='ce')")
    assert "alpha=0.25 (10·eps/steps)" in repr(PGD(m, eps=1.0, steps=40, norm="l1"))
    assert repr(PGD(m, eps=0.3, steps=40, alpha=0.01, restarts=2)) == (
        "PGD(eps=0.3, norm='linf', steps=40, alpha=0.01, random_start=True, restarts=2, loss='ce')")
    assert repr(FGSM(m, eps=0.1)) == "FGSM(eps=0.1, norm='linf', steps=1, alpha=0.1 (eps), loss='ce')"
    assert repr(MIFGSM(m, eps=0.3, steps=10, targeted="random")) == (
        "MIFGSM(eps=0.3, norm='linf', steps=10, alpha=0.03 (eps/steps), decay=1, loss='ce', targeted='random')")
    assert repr(APGD(m, eps=0.1, steps=100, seed=3)) == (
        "APGD(eps=0.1, norm='linf', steps=100, eta=0.2 (2·eps (L1: eps), halved where progress stalls), restarts=1, "
        "rho=0.75, large_eps=False, loss='ce', seed=3)")
    assert repr(CW(m)) == "CW(eps=inf, norm='l2', c=1, kappa=0, steps=100, lr=0.1, binary_steps=5, loss='margin')"
    assert repr(Square(m, eps=0.1, n_queries=300, early_stop=False)) == (
        "Square(eps=0.1, norm='linf', n_queries=300, p_init=0.8, rescale=True, loss='margin', early_stop=False)")


def test_setting_gives_the_step_size_that_runs_at_another_eps():
    atk = PGD(net(), eps=0.3, steps=10)
    assert atk.setting("alpha") == pytest.approx(0.075) and atk.setting("alpha", 0.1) == pytest.approx(0.025)
    assert PGD(net(), eps=0.3, alpha=0.01).setting("alpha", 0.1) == 0.01


def test_attack_result_prints_a_summary_not_tensors():
    res = AttackResult(torch.rand(200, 1, 28, 28), torch.arange(200) % 4 == 0, forwards=1234, backwards=1000)
    assert repr(res) == "AttackResult(n=200, success=50/200 (25.0%), forwards=1234, backwards=1000)"


# -- progress ----------------------------------------------------------------------------------------------
PROGRESS_CASES = [(lambda m, p: CW(m, steps=20, binary_steps=2, progress=p), "CW", 40),
                  (lambda m, p: Square(m, eps=0.01, n_queries=200, progress=p), "Square", 200)]


@pytest.mark.parametrize("make,desc,total", PROGRESS_CASES, ids=["cw", "square"])
def test_cw_and_square_show_progress_on_long_calls_and_not_when_off(make, desc, total, monkeypatch, capsys):
    bars = []

    class Recorded(advkit.progress.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(advkit.progress, "tqdm", Recorded)
    monkeypatch.setattr(advkit.progress, "LONG_WORK_S", 0.0)  # every call counts as long
    x, y = batch()
    make(net(), True)(x, y)
    assert desc in capsys.readouterr().err
    assert (bars[-1].total, bars[-1].n) == (total, total)  # advanced to the end
    make(net(), False)(x, y)
    assert capsys.readouterr().err == ""


def test_short_calls_stay_quiet_by_default(capsys):
    assert advkit.progress.LONG_WORK_S >= 1
    CW(net(), steps=5, binary_steps=1)(*batch())
    assert capsys.readouterr().err == ""


def test_check_number_message_names_bounds():
    from advkit.core import check_number
    with pytest.raises(ValueError, match=r"^rho must be a finite number >= 0 and <= 1, got 1.5$"):
        check_number(1.5, "rho", low_open=False, high=1)
    with pytest.raises(TypeError, match="steps must be an integer"):
        check_number(2.5, "steps", low=1, integer=True)
    assert check_number(np.int64(3), "steps", low=1, integer=True) == 3 and not math.isnan(check_number(1, "x"))

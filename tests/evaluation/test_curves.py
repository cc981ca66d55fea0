"""Curves: the analytic linear model, survivors-only versus full evaluation, inputs and errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import advkit
from advkit.attacks import FGSM, PGD, Square


class BinaryLinear(nn.Module):
    """z = w.x + b, returned as two logits (-z, z): class 1 iff z > 0."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = nn.Parameter(w), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        z = x @ self.w + self.b
        return torch.stack([-z, z], 1)


@pytest.fixture(scope="module")
def linear_problem():
    """Inputs in [0.3, 0.7] (eps <= 0.25 never meets the box), 10% labels flipped (wrong clean)."""
    g = torch.Generator().manual_seed(0)
    d, n = 20, 400
    w = torch.randn(d, generator=g)
    x = 0.3 + 0.4 * torch.rand(n, d, generator=g)
    model = BinaryLinear(w, float(-0.5 * w.sum()))
    with torch.no_grad():
        z = model(x)[:, 1]
    y = (z > 0).long()
    flip = torch.rand(n, generator=g) < 0.1
    y[flip] = 1 - y[flip]
    distance = z.abs() / w.abs().sum()  # the smallest L-inf perturbation that flips the sign
    return model, x, y, distance


EPS = [0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.2]


def analytic(y, model, x, distance, eps):
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    return [float((correct & (distance > e)).float().mean()) for e in eps]


def pgd10(m):
    return PGD(m, steps=10)


def test_pgd_matches_the_closed_form_curve_and_survivors_equal_full(linear_problem):
    model, x, y, distance = linear_problem
    kwargs = {"attacks": {"pgd": pgd10}, "eps": EPS, "progress": False, "checks": False, "device": "cpu"}
    fast = advkit.evaluate(model, (x, y), **kwargs)
    full = advkit.evaluate(model, (x, y), survivors=False, **kwargs)
    expected = analytic(y, model, x, distance, EPS)
    got = [acc for _, acc in fast.curve["pgd"]]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 0.01, (got, expected)
    assert fast.curve == full.curve  # the attack is exact here: both ways agree point for point
    assert fast.curve["worst"] == fast.curve["pgd"]

    def spent(rep):
        return sum(p["backwards"] for p in rep.to_dict()["models"]["model"]["curves"]["pgd"])

    assert spent(fast) < spent(full)


@pytest.mark.parametrize("warm_start", [True, False], ids=["warm", "fresh"])
def test_survivors_never_above_full_on_a_cnn(trained_cnn, test_batch, warm_start):
    x, y = test_batch[0][:96], test_batch[1][:96]
    kwargs = {"attacks": {"fgsm": "fgsm", "pgd": pgd10}, "eps": [0, 0.05, 0.1, 0.2], "progress": False, "checks": False,
                  "device": "cpu", "examples": 0, "warm_start": warm_start}
    fast = advkit.evaluate(trained_cnn, (x, y), **kwargs)
    full = advkit.evaluate(trained_cnn, (x, y), survivors=False, **kwargs)
    for name in ("fgsm", "pgd", "worst"):
        for (e, a), (_, b) in zip(fast.curve[name], full.curve[name], strict=True):
            assert a <= b + 1e-12, (name, e, a, b)
        accs = [a for _, a in fast.curve[name]]
        assert accs == sorted(accs, reverse=True)  # non-increasing by construction
    if warm_start:  # each eps continues the last one's search, in both modes: they agree exactly
        assert fast.curve["pgd"] == full.curve["pgd"]
    res = fast["model"]
    assert torch.equal(res.robust("worst"), res.robust("fgsm") & res.robust("pgd"))  # per-sample worst case


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warm_start_spends_fewer_passes_and_is_recorded(trained_cnn, test_batch, seed):
    """Measured on seeds 0-7 (PGD-10 on 96 samples): warm starts spend 0.878-0.890 of the fresh starts'
    backward passes (1856-1870 against 2096-2114), fewer at every eps after the first by 50 or more."""
    x, y = test_batch[0][:96], test_batch[1][:96]
    kwargs = {"attacks": {"pgd": pgd10}, "eps": [0, 0.05, 0.1, 0.15, 0.2], "progress": False, "checks": False,
              "device": "cpu", "examples": 0, "seed": seed}
    warm, fresh = (advkit.evaluate(trained_cnn, (x, y), warm_start=w, **kwargs) for w in (True, False))

    def passes(rep):
        return [p["backwards"] for p in rep.to_dict()["models"]["model"]["curves"]["pgd"]]

    assert passes(warm)[:2] == passes(fresh)[:2]  # eps 0 and the first eps: nothing to start from yet
    assert all(w <= f for w, f in zip(passes(warm)[2:], passes(fresh)[2:], strict=True))
    assert sum(passes(warm)) < 0.95 * sum(passes(fresh))
    assert warm.to_dict()["config"]["warm_start"] is True and fresh.to_dict()["config"]["warm_start"] is False


def test_data_forms_agree_and_eps_zero_is_clean(trained_cnn, test_batch):
    x, y = test_batch[0][:40], test_batch[1][:40]
    kwargs = {"attacks": ["fgsm"], "eps": [0.1, 0], "progress": False, "checks": False, "device": "cpu", "examples": 0}
    curves = [advkit.evaluate(trained_cnn, data, **kwargs).curve
              for data in ((x, y), TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=16))]
    assert curves[0] == curves[1] == curves[2]
    assert curves[0]["fgsm"][0] == (0.0, advkit.train.accuracy(trained_cnn, (x, y)))


def test_several_models_share_one_report_and_compare_merges(trained_cnn, test_batch):
    x, y = test_batch[0][:32], test_batch[1][:32]
    kwargs = {"attacks": ["fgsm"], "eps": [0, 0.1], "progress": False, "checks": False, "device": "cpu", "examples": 0}
    both = advkit.evaluate({"a": trained_cnn, "b": nn.Sequential(trained_cnn)}, (x, y), **kwargs)
    assert set(both.curve) == {"a/fgsm", "a/worst", "b/fgsm", "b/worst"}
    assert both.curve["a/fgsm"] == both.curve["b/fgsm"]
    single = advkit.evaluate(trained_cnn, (x, y), **kwargs)
    merged = advkit.evaluation.Report.compare({"before": single, "after": single})
    assert list(merged.results) == ["before", "after"]
    with pytest.raises(ValueError, match=r"^reports must share the eps grid and norm to be compared; got \[0\.0, 0\.2"):
        advkit.evaluation.Report.compare([single, advkit.evaluate(trained_cnn, (x, y), **{**kwargs, "eps": [0, 0.2]})])


def test_attack_objects_torchattacks_and_bad_input(trained_cnn, test_batch, torchattacks):
    x, y = test_batch[0][:16], test_batch[1][:16]
    kwargs = {"eps": [0, 0.1], "progress": False, "checks": False, "device": "cpu", "examples": 0}
    ours = advkit.evaluate(trained_cnn, (x, y), attacks=[FGSM(trained_cnn)], **kwargs)
    theirs = advkit.evaluate(trained_cnn, (x, y), attacks={"ta-fgsm": torchattacks.FGSM(trained_cnn)}, **kwargs)
    assert ours.curve["fgsm"] == theirs.curve["ta-fgsm"]  # same single step, same result
    with pytest.raises(ValueError, match="valid names: .*fgsm.*pgd"):
        advkit.evaluate(trained_cnn, (x, y), attacks=["nope"], **kwargs)
    with pytest.raises(ValueError, match="another model"):
        advkit.evaluate(trained_cnn, (x, y), attacks=[FGSM(nn.Sequential(trained_cnn))], **kwargs)
    with pytest.raises(ValueError, match=r"^eps must be finite and >= 0, got -0\.1$"):
        advkit.evaluate(trained_cnn, (x, y), attacks=["fgsm"], eps=[-0.1], progress=False, device="cpu")
    with pytest.raises(ValueError, match="^norm must be one of 'linf', 'l2', 'l1'; got 'l3'$"):
        advkit.evaluate(trained_cnn, (x, y), attacks=["fgsm"], norm="l3", progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"^data images must lie in \[0, 1\] \(normalise inside the model"):
        advkit.evaluate(trained_cnn, (x * 2 - 1, y), attacks=["fgsm"], progress=False, device="cpu")


def test_l2_evaluation_with_checks_and_a_norm_mismatch_is_refused(trained_cnn, test_batch):
    x, y = test_batch[0][:48], test_batch[1][:48]
    attacks = {"pgd": lambda m: PGD(m, steps=10, norm="l2"), "square": lambda m: Square(m, 1.0, 100, norm="l2")}
    rep = advkit.evaluate(trained_cnn, (x, y), attacks=attacks, eps=[0, 1.0, 2.0, 3.0], norm="l2", probe=24,
                          queries=100, progress=False, device="cpu", examples=0)
    pgd = [a for _, a in rep.curve["pgd"]]
    assert pgd[0] > 0.9 and 0.4 < pgd[1] < pgd[0] and pgd[3] < 0.1  # L2 budgets: a gradual fall, not a cliff
    assert all(c.passed for c in rep.checks), [(c.name, c.message) for c in rep.checks]
    with pytest.raises(ValueError, match="attack 'pgd' works in norm 'linf' but the evaluation's norm is 'l2'"):
        advkit.evaluate(trained_cnn, (x, y), attacks={"pgd": pgd10}, eps=[0, 1.0], norm="l2", progress=False,
                        device="cpu")



def test_names_say_the_steps_and_one_name_is_a_list(trained_cnn, test_batch):
    import inspect

    import numpy as np

    from advkit.evaluation.specs import parse_name

    assert inspect.signature(advkit.evaluate).parameters["attacks"].default == ("fgsm", "apgd")
    assert parse_name("pgd") == ("pgd", None) and parse_name("PGD-40") == ("pgd", 40)
    assert parse_name("apgd-t-100") == ("apgd-t", 100) and parse_name("apgd-t") == ("apgd-t", None)
    for bad, message in (("fgsm-3", "'fgsm' has no step count"), ("pgd-0", "step count must be >= 1"),
                         ("p", "unknown attack 'p'"), ("pgd-x", "unknown attack 'pgd-x'")):
        with pytest.raises(ValueError, match=message):
            parse_name(bad)
    x, y = test_batch[0][:16], test_batch[1][:16]
    kwargs = {"progress": False, "checks": False, "device": "cpu", "examples": 0}
    rep = advkit.evaluate(trained_cnn, (x.numpy(), y.numpy()), attacks="pgd", eps=np.array([0.2, 0.0, 0.1]), **kwargs)
    assert list(rep.curve) == ["pgd", "worst"] and rep.config["eps"] == [0.0, 0.1, 0.2]
    description = rep["model"].attacks["pgd"].description
    assert description.startswith("PGD-10, alpha 2.5·eps/10, eps ∈ {0.1, 0.2}; PGD(") and "0.031" not in description
    named = advkit.evaluate(trained_cnn, (x, y), attacks=["pgd-3"], eps=np.float32(0.1), **kwargs)
    assert named["model"].attacks["pgd-3"].description.startswith("PGD-3, alpha 2.5·eps/3, eps ∈ {0.1}")
    assert named.config["eps"] == [pytest.approx(0.1)]
    assert advkit.evaluate(trained_cnn, (x.double(), y), attacks="fgsm", eps=[0, 0.1], **kwargs).curve == \
        advkit.evaluate(trained_cnn, (x, y), attacks="fgsm", eps=[0, 0.1], **kwargs).curve  # float64 data: converted
    for eps, error in (([[0.1]], "must hold numbers"), ("0.1", "a number or a non-empty list"),
                       ([0.1, "a"], "must hold numbers"), (np.zeros((2, 2)), "1-D")):
        with pytest.raises((ValueError, TypeError), match=error):
            advkit.evaluate(trained_cnn, (x, y), attacks="fgsm", eps=eps, **kwargs)


@pytest.mark.parametrize("bad", [42, -3])
def test_labels_out_of_range_are_an_error(trained_cnn, test_batch, bad):
    x, y = test_batch[0][:16], test_batch[1][:16].clone()
    y[5] = bad
    with pytest.raises(ValueError, match=rf"labels must be class indices in \[0, 10\).*label {bad} at index 5"):
        advkit.evaluate(trained_cnn, (x, y), attacks="fgsm", progress=False, device="cpu")


def test_progress_covers_the_checks_and_is_silent_when_off(trained_cnn, test_batch, capsys):
    x, y = test_batch[0][:16], test_batch[1][:16]
    kwargs = {"attacks": "fgsm", "eps": [0, 0.1], "probe": 8, "queries": 10, "device": "cpu", "examples": 0}
    advkit.evaluate(trained_cnn, (x, y), progress=True, **kwargs)
    shown = capsys.readouterr().err
    assert "evaluate model" in shown and "checks model" in shown and "finite-logits" in shown
    advkit.evaluate(trained_cnn, (x, y), progress=False, **kwargs)
    assert capsys.readouterr().err == ""

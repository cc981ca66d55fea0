"""Issue 23: the default attacks are defined in one place, and the stronger-attack check catches an
attack set that overstates robustness (and passes one that does not)."""
from __future__ import annotations

import argparse
import inspect

import pytest
import torch

import advkit
from advkit.app import demo
from advkit.attacks import PGD
from advkit.evaluation.checks import CHECKS, STRONGER_BUDGET, STRONGER_STEPS, binomial_slack, seeded_order, stronger_eps
from advkit.evaluation.options import EvaluationOptions
from advkit.evaluation.results import WORST
from advkit.evaluation.specs import DEFAULT_ATTACKS


def _default_attacks(command: str) -> list[str]:
    """The default of ``advkit COMMAND --attacks``, as argparse gives it to the command."""
    from advkit.app.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    action = next(a for a in sub._actions if a.dest == "attacks")
    return action.type(action.default)


def test_the_default_attacks_are_defined_once():
    """evaluate, its options, `advkit evaluate`, `advkit defend` and the demo use specs.DEFAULT_ATTACKS,
    which is the set benchmarks/judges.py chose (APGD-CE, FGSM beside it)."""
    assert DEFAULT_ATTACKS == ("fgsm", "apgd")
    assert inspect.signature(advkit.evaluate).parameters["attacks"].default is DEFAULT_ATTACKS
    assert [s.name for s in EvaluationOptions().attacks] == list(DEFAULT_ATTACKS)
    for command in ("evaluate", "defend"):
        assert _default_attacks(command) == list(DEFAULT_ATTACKS), command
    assert "DEFAULT_ATTACKS" in inspect.getsource(demo.run_demo)


@pytest.mark.parametrize("device, extra", [("cpu", []), ("cuda", ["autoattack"])])
def test_the_demo_evaluates_with_the_default_attacks(monkeypatch, tmp_path, device, extra):
    """The demo's curves are the default attacks, and on a GPU (mocked here) AutoAttack beside them."""
    seen = {}

    def fake_evaluate(models, data, attacks, **kwargs):
        seen["attacks"] = attacks
        raise RuntimeError("stop here")

    monkeypatch.setattr(demo, "evaluate", fake_evaluate)
    monkeypatch.setattr(demo, "QUICK", demo.DemoConfig(epochs=1, n=16, eps=(0.0, 0.1), pgd_steps=2, probe=8,
                                                       queries=10, defense_epochs=1, advgan_steps=1))
    monkeypatch.setattr(demo, "fit", lambda *a, **k: None)
    monkeypatch.setattr(demo, "defend", lambda model, *a, **k: model)
    monkeypatch.setattr(demo, "accuracy", lambda *a, **k: 0.5)
    monkeypatch.setattr(demo, "default_device", torch.device)  # "cuda" without a GPU: evaluate stops first
    with pytest.raises(RuntimeError, match="stop here"):
        demo.run_demo(tmp_path, quick=True, device=device, progress=False)
    assert seen["attacks"] == list(DEFAULT_ATTACKS) + extra


def test_the_binomial_slack():
    """0.5% of the samples plus two binomial standard deviations there, at least 1."""
    assert [binomial_slack(n) for n in (1, 32, 100, 200, 500, 1000)] == [1, 1, 1, 2, 5, 9]


def test_the_check_judges_at_the_largest_eps_where_a_tenth_of_the_clean_accuracy_stands():
    """Where the worst case keeps 10% of the clean accuracy, the largest such eps; when none does, the
    smallest eps > 0; none without an eps > 0."""
    from advkit.evaluation.results import AttackRecord, ModelResult

    def result(eps, standing):  # 10 samples, all clean, standing[j] of them robust at eps[j]
        robust = torch.stack([torch.arange(10) < k for k in standing], 1)
        return ModelResult("m", eps, torch.zeros(10, dtype=torch.long), torch.ones(10, dtype=torch.bool), 10,
                           {"pgd": AttackRecord("pgd", "", robust, [])})

    assert stronger_eps(result([0.0, 0.1, 0.2, 0.3], [10, 6, 1, 0])) == (2, 0.2)
    assert stronger_eps(result([0.0, 0.1, 0.2, 0.3], [10, 9, 8, 7])) == (3, 0.3)
    assert stronger_eps(result([0.0, 0.1, 0.2], [10, 0, 0])) == (1, 0.1)
    assert stronger_eps(result([0.0], [10])) is None


def _stronger(report, name="model"):
    return next(c for c in report.checks if c.name == "stronger-attack" and c.model == name)


@pytest.mark.slow
def test_the_stronger_attack_check_fails_where_the_attack_set_overstates(trained_cnn, test_batch):
    """PGD with steps too short to leave a small ball overstates robustness: APGD-DLR fools many of the
    samples it left standing, the check fails, giving the overstatement in points and the attacks to
    add; it attacks every standing sample that fits in its share of the curve's passes."""
    x, y = test_batch[0][:100], test_batch[1][:100]
    report = advkit.evaluate(trained_cnn, (x, y), attacks={"pgd": lambda m: PGD(m, steps=20, alpha=0.001)},
                             eps=[0, 0.1, 0.2], probe=8, progress=False, device="cpu", examples=0)
    check, result = _stronger(report), report["model"]
    assert CHECKS["stronger-attack"] is not None and not check.passed and check.details["eps"] == 0.2
    assert check.details["extra"] > check.details["allowed"] == binomial_slack(check.details["samples"])
    points = 100 * result.clean_accuracy * check.details["extra"] / check.details["samples"]
    assert f"overstates robustness by at least {points:.1f} points at eps=0.2" in check.message
    assert "add 'fgsm', 'apgd' to the attacks (or use 'autoattack')" in check.message
    assert 0 < check.cost.backwards <= STRONGER_STEPS * check.details["standing"]
    assert _within_budget(check, result)


def _within_budget(check, result):
    """The check's passes are at most its share of the curves' plus one sample's."""
    curve = sum(c.forwards + c.backwards for name in result.ran for c in result.attacks[name].costs)
    return check.cost.forwards + check.cost.backwards <= STRONGER_BUDGET * curve + 2 * STRONGER_STEPS + 2


@pytest.mark.slow
def test_the_stronger_attack_check_passes_the_default_attacks(trained_cnn, test_batch):
    """On the default attacks (APGD-CE judges the standard model like APGD-DLR) the check passes,
    having attacked every correctly classified sample left standing, not only the probe's 8."""
    x, y = test_batch[0][:100], test_batch[1][:100]
    report = advkit.evaluate(trained_cnn, (x, y), eps=[0, 0.1, 0.2], probe=8, progress=False, device="cpu",
                             examples=0)
    check, result = _stronger(report), report["model"]
    assert check.passed and not check.skipped, check.message
    assert check.details["extra"] <= check.details["allowed"] and check.details["eps"] == 0.1
    standing = result.robust(WORST)[:, 1]  # of the first correctly classified samples in the seeded order:
    first = seeded_order(result.clean, 0)[:check.details["samples"]]  # as many as fit in the budget
    assert check.details["standing"] == int(standing[first].sum()) > 8
    assert _within_budget(check, result)


def test_an_apgd_t_curve_answers_the_check_at_no_cost(trained_cnn, test_batch):
    """With an APGD-T curve beside PGD the check reads the curves: no pass spent; it compares the
    samples PGD left standing with what the APGD-T curve fooled of them."""
    x, y = test_batch[0][:60], test_batch[1][:60]
    report = advkit.evaluate(trained_cnn, (x, y), attacks={"pgd-2": lambda m: PGD(m, steps=2, alpha=0.01),
                                                           "apgd-t": "apgd-t-10"},
                             eps=[0, 0.15], probe=32, progress=False, device="cpu", examples=0)
    check = _stronger(report)
    assert check.cost.backwards == check.cost.forwards == 0
    assert "the apgd-t curve at eps=0.15 fooled" in check.message and "that pgd-2 left standing" in check.message
    assert not check.passed  # PGD with 2 short steps overstates here too
    assert "pgd-2 alone would overstate" in check.message and "the worst case, which takes the apgd-t curve, does not" \
        in check.message  # the worst case takes the APGD-T curve: only the other attack falls short


def test_the_demo_says_which_attack_sets_the_worst_case():
    """The attack with the lowest accuracy at the grid point sets the worst case, the others follow."""
    from advkit.evaluation.results import AttackRecord, ModelResult

    clean = torch.ones(4, dtype=torch.bool)
    fgsm = torch.tensor([[1, 1], [1, 1], [1, 1], [1, 0]], dtype=torch.bool)
    apgd = torch.tensor([[1, 1], [1, 0], [1, 0], [1, 0]], dtype=torch.bool)
    result = ModelResult("m", [0.0, 0.2], torch.zeros(4, dtype=torch.long), clean, 10,
                         {"fgsm": AttackRecord("fgsm", "", fgsm, []), "apgd": AttackRecord("apgd", "", apgd, [])})
    assert demo.set_by(result, 1) == "set by apgd: apgd 25.0%, fgsm 75.0%"


def test_the_report_says_which_attacks_set_the_worst_case():
    """The accuracy table's last column names the attack with the lowest accuracy at each eps > 0, every
    one of them on a tie; the worst case itself may sit lower (they fooled different samples)."""
    from advkit.evaluation.results import AttackRecord, Cost, ModelResult
    from advkit.evaluation.tables import model_tables

    # 4 samples at eps 0 / 0.1 / 0.2: fgsm leaves 3 then 2, apgd 2 then 2 (other samples): worst 2 then 1
    fgsm = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    apgd = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    records = {name: AttackRecord(name, "", robust, [Cost()] * 3) for name, robust in (("fgsm", fgsm), ("apgd", apgd))}
    result = ModelResult("m", [0.0, 0.1, 0.2], torch.zeros(4, dtype=torch.long), fgsm[:, 0], 10, records)
    table = model_tables(result)[0]
    assert table.header[-1] == "worst set by" and [row[-1] for row in table.rows] == ["", "apgd", "fgsm, apgd"]
    assert result.accuracy(WORST) == [1.0, 0.5, 0.25]


def test_the_stronger_attack_advice_names_what_is_missing_or_cut_short():
    """The quick demo runs 'apgd-10': the advice asks for APGD at its full steps, not for an 'apgd' it has."""
    from advkit.evaluation.checks import stronger_advice

    assert stronger_advice({"fgsm": None, "apgd-10": None}) == "'apgd' at its full steps (here apgd-10)"
    assert stronger_advice({"pgd-40": None, "my own": None}) == "'fgsm', 'apgd'"
    assert stronger_advice({"fgsm": None, "apgd": None}) == "'apgd-t'"

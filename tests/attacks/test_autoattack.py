"""AutoAttack as an attack (the standard ensemble, its contract, its path through evaluate) and our
FAB-T. The comparison with the official code is in test_autoattack_official.py."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import APGD, FAB, AutoAttack, autoattack
from advkit.attacks.fab import hyperplane_step
from advkit.evaluation.specs import resolve
from advkit.rng import batch_seed, sample_seeds

NAMES = ["apgd-ce", "apgd-t", "fab-t", "square"]


@pytest.fixture
def small_budgets(monkeypatch):
    """The paper's budgets take minutes on a CPU; the ensemble logic is the same on small ones."""
    monkeypatch.setattr(autoattack, "STEPS", 3)
    monkeypatch.setattr(autoattack, "QUERIES", 20)


def tiny_bn_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    with torch.no_grad():
        model(torch.rand(16, 1, 8, 8))
    return model


def test_standard_version_has_the_papers_components_and_budgets(trained_cnn):
    atk = AutoAttack(trained_cnn, eps=0.3)
    assert [c["name"] for c in atk.describe()] == NAMES
    text = repr(atk)
    for part in ("version='standard'", "eps=0.3", "norm='linf'", "seed=0", "apgd-ce(steps=100, restarts=1, loss='ce'",
                 "apgd-t(steps=100, restarts=1, n_target_classes=9",
                 "fab-t(steps=100, n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9)",
                 "square(n_queries=5000, p_init=0.8, rescale=False)"):  # the official resc_schedule=False
        assert part in text, text
    (spec,) = resolve(["autoattack"])
    built = spec.build(trained_cnn, "l2", 10)
    assert isinstance(built, AutoAttack) and built.norm == "l2"
    assert all(c.attack.norm == "l2" for c in built.components)


def test_settings_are_checked_before_any_work(trained_cnn):
    with pytest.raises(ValueError, match="^version must be one of 'standard', 'rand', got 'plus'$"):
        AutoAttack(trained_cnn, version="plus")
    with pytest.raises(ValueError, match="^norm must be one of 'linf', 'l2', 'l1'; got 'l3'$"):
        AutoAttack(trained_cnn, norm="l3")
    with pytest.raises(ValueError, match=r"^eps must be finite and >= 0, got -0\.1$"):
        AutoAttack(trained_cnn, eps=-0.1)
    with pytest.raises(ValueError, match=r"^target: AutoAttack is untargeted \(APGD-T and FAB-T pick their own"):
        AutoAttack(trained_cnn).run(torch.rand(2, 1, 28, 28), torch.tensor([0, 1]), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match=r"^y must lie in \[0, 10\); saw 0\.\.42$"):
        AutoAttack(trained_cnn).run(torch.rand(2, 1, 28, 28), torch.tensor([0, 42]))


def test_contract_result_in_ball_model_untouched_same_seed(small_budgets):
    model = tiny_bn_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(12) % 10
    for norm, eps in (("linf", 0.1), ("l2", 0.5)):
        res = AutoAttack(model, eps=eps, norm=norm, seed=3).run(x, y)
        d = (res.x_adv - x).flatten(1)
        assert float(d.abs().amax() if norm == "linf" else d.norm(dim=1).max()) <= eps * (1 + 1e-5)
        assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1 and res.x_adv.shape == x.shape
        again = AutoAttack(model, eps=eps, norm=norm, seed=3).run(x, y)
        assert torch.equal(res.x_adv, again.x_adv) and torch.equal(res.success, again.success)
        with torch.no_grad():
            model.eval()
            assert torch.equal(res.success, model(res.x_adv).argmax(1) != y)  # success re-checked on the result
            model.train()
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(AutoAttack(model, eps=0.0)(x, y), x)
    assert torch.equal(AutoAttack(model, eps=0.3).run(x, y, eps=0.0).x_adv, x)


def test_each_component_attacks_what_the_earlier_ones_left_with_their_seeds(trained_cnn, test_batch, small_budgets):
    """The ensemble equals its components run by hand, each on the survivors, each sample with its own seed."""
    x, y = test_batch[0][:48], test_batch[1][:48]
    atk = AutoAttack(trained_cnn, eps=0.1)
    seeds = sample_seeds(batch_seed(0, 1), torch.arange(len(x)))
    res = atk.run(x, y, seed=seeds)
    expected = torch.zeros(len(x), dtype=torch.bool)
    sizes = []
    for part in atk.components:
        idx = (~expected).nonzero().squeeze(1)
        sizes.append(len(idx))
        expected[idx] = part.attack.run(x[idx], y[idx], eps=0.1, seed=seeds[idx]).success
    assert sizes[0] == len(x) and sizes[1] < sizes[0]  # APGD-CE on all, the rest on fewer
    assert torch.equal(res.success, expected)


def test_warm_start_goes_to_apgd_ce(trained_cnn, test_batch, small_budgets):
    x, y = test_batch[0][:32], test_batch[1][:32]
    start = APGD(trained_cnn, eps=0.05, steps=3).run(x, y).x_adv
    atk = AutoAttack(trained_cnn, eps=0.1)
    assert atk.warm_starts
    first = atk.components[0].attack.run(x, y, eps=0.1, x_init=start, seed=0)
    fresh = atk.components[0].attack.run(x, y, eps=0.1, seed=0)
    assert not torch.equal(first.x_adv, fresh.x_adv)  # the start matters
    res = atk.run(x, y, eps=0.1, x_init=start, seed=0)
    assert bool(res.success[first.success].all())
    unfooled = ~res.success
    assert torch.equal(res.x_adv[unfooled], first.x_adv[unfooled])  # left standing: APGD-CE's point


def test_autoattack_through_evaluate_by_name_and_as_an_object(trained_cnn, test_batch, small_budgets):
    x, y = test_batch[0][:24], test_batch[1][:24]
    attacks = {"autoattack": "autoattack", "object": AutoAttack(trained_cnn), "apgd-ce": lambda m: APGD(m, steps=3)}
    rep = advkit.evaluate(trained_cnn, (x, y), attacks=attacks, eps=[0, 0.1], checks=False, progress=False,
                          device="cpu", examples=0)
    res = rep["model"]
    ensemble, alone = res.robust("autoattack")[:, 1], res.robust("apgd-ce")[:, 1]
    assert 0 < int(alone.sum()) and bool((ensemble <= alone).all())  # APGD-CE first (same seeds), then the others
    ran = [rec.costs[1].forwards for rec in (res.attacks["autoattack"], res.attacks["apgd-ce"])]
    assert ran[0] > ran[1]  # on APGD-CE's survivors
    assert torch.equal(res.robust("object"), res.robust("autoattack"))
    assert [c["name"] for c in res.attacks["autoattack"].description] == NAMES


# -- FAB-T -------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hyperplane_step_reaches_the_plane_in_the_box_with_the_least_norm(norm):
    g = torch.Generator().manual_seed(0)
    t, w = torch.rand(200, 30, generator=g), torch.randn(200, 30, generator=g)
    w[:, :4] = 0
    c = 6 * torch.randn(200, generator=g)
    d = hyperplane_step(t, w, c, norm)
    assert bool(((t + d) >= -1e-6).all() and ((t + d) <= 1 + 1e-6).all())
    room = torch.where(w * c[:, None] > 0, 1 - t, t)  # how far each coordinate may move the way it helps
    reach = (w.abs() * room).sum(1)  # the most |w . d| the box allows
    ok = c.abs() < reach - 1e-4
    assert 50 < int(ok.sum()) < 190
    assert torch.allclose((w * d).sum(1)[ok], c[ok], atol=1e-4)
    assert torch.allclose(d[~ok], (torch.sign(w * c[:, None]) * room)[~ok])  # out of reach: as close as the box allows
    assert bool((d[:, :4] == 0).all())
    # least norm (KKT of this convex problem): d_i = sign(w_i c) min(lam g_i, room_i), one lam per row,
    # g_i = 1 (linf) or |w_i| (l2); so the coordinates short of their bound share lam
    g_ = torch.ones_like(w) if norm == "linf" else w.abs()
    lam = torch.where((d.abs() < room - 1e-5) & (w != 0), d.abs() / g_.clamp_min(1e-12), torch.nan)
    rows = ok & (~lam.isnan()).any(1)
    spread = (lam.nan_to_num(-1).amax(1) - lam.nan_to_num(float("inf")).amin(1))[rows]
    assert int(rows.sum()) > 50 and float(spread.max()) < 1e-3
    saturated = (w != 0) & (d.abs() >= room - 1e-5)
    top = lam.nan_to_num(-1).amax(1, keepdim=True).expand_as(w)
    assert bool((room <= top * g_ + 1e-4)[saturated & rows[:, None]].all())  # bounds hit before lam
    assert bool((torch.sign(d) == torch.sign(w * c[:, None]))[d != 0].all())
    zero = hyperplane_step(t[:3], w[:3], torch.zeros(3), norm)
    assert torch.equal(zero, torch.zeros_like(zero))


def test_fab_targeted_reaches_given_targets_and_stays_in_the_ball(trained_cnn, test_batch):
    x, y = test_batch[0][:32], test_batch[1][:32]
    target = (y + 1) % 10
    res = FAB(trained_cnn, eps=0.3, steps=30).run(x, y, target)
    with torch.no_grad():
        pred = trained_cnn(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred == target) and res.success.float().mean() >= 0.8
    assert float((res.x_adv - x).abs().amax()) <= 0.3 + 1e-6

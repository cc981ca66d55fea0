"""from_torchattacks: torchattacks attacks behind advkit's interface and guarantees (the shared
guarantees run on a wrapped PGD in test_guarantees.py; here: what is specific to the wrapping)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from advkit.attacks import Attack, AttackResult, from_torchattacks

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]  # pytest runs with --import-mode=importlib
from launch import child_env  # noqa: E402
from test_guarantees import assert_same, l2, sample_x, snapshot, tiny_model  # noqa: E402


def test_wraps_into_an_advkit_attack_with_its_eps_and_norm(torchattacks):
    model = tiny_model()
    linf = from_torchattacks(torchattacks.PGD(model, eps=0.2))
    l2_atk = from_torchattacks(torchattacks.PGDL2(model, eps=1.5))
    apgd = from_torchattacks(torchattacks.APGD(model, eps=0.7, norm="L2", steps=2))
    assert isinstance(linf, Attack) and (linf.eps, linf.norm) == (0.2, "linf")
    assert (l2_atk.eps, l2_atk.norm) == (1.5, "l2") and (apgd.eps, apgd.norm) == (0.7, "l2")


def test_run_returns_a_rechecked_result_with_counted_passes(torchattacks):
    model, x = tiny_model(), sample_x("cnn", 8)
    res = from_torchattacks(torchattacks.PGD(model, eps=0.3, alpha=0.05, steps=4)).run(x, torch.arange(8))
    assert isinstance(res, AttackResult)
    with torch.no_grad():
        assert torch.equal(res.success, model(res.x_adv).argmax(1) != torch.arange(8))
    assert res.forwards > 0 and res.backwards > 0


def test_pgd_l2_at_eps_zero_returns_x_not_nan(torchattacks):
    """torchattacks' PGDL2 divides 0 by 0 at eps=0 once a gradient vanishes; the wrapper returns x."""
    model, x = tiny_model(), sample_x("cnn", 4)
    assert torch.equal(from_torchattacks(torchattacks.PGDL2(model, eps=0.0))(x, torch.arange(4)), x)


def test_attack_without_eps_is_held_to_the_box_only(torchattacks):
    model, x = tiny_model(), sample_x("cnn", 4)
    atk = from_torchattacks(torchattacks.CW(model, c=1.0, steps=3))
    assert math.isinf(atk.eps)
    x_adv = atk(x, torch.arange(4))
    assert 0 <= x_adv.min() and x_adv.max() <= 1
    assert (l2(atk.run(x, torch.arange(4), eps=0.01).x_adv - x) <= 0.01 + 1e-6).all()


def test_bn_statistics_kept_even_when_torchattacks_runs_the_model_in_train_mode(torchattacks):
    model = tiny_model().train()
    ta = torchattacks.PGD(model, eps=0.1, steps=2)
    ta.set_model_training_mode(model_training=True, batchnorm_training=True)
    before = snapshot(model)
    from_torchattacks(ta)(sample_x("cnn", 8), torch.arange(8))
    assert_same(before, snapshot(model))


def test_torchattacks_object_and_global_rng_are_left_as_they_were(torchattacks):
    model = tiny_model()
    ta = torchattacks.APGD(model, eps=0.1, steps=2, seed=5)  # APGD reseeds the global RNG itself
    state = dict(vars(ta))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    from_torchattacks(ta).run(sample_x("cnn", 4), torch.arange(4), eps=0.2)
    assert torch.equal(torch.rand(3), expected)
    assert all(getattr(ta, k) is v or getattr(ta, k) == v for k, v in state.items() if k != "_attacks")


def test_targeted_modes_map_to_advkit_and_targets_are_reached(trained_cnn, test_batch, torchattacks):
    x, y = test_batch[0][:32], test_batch[1][:32]
    ta = torchattacks.PGD(trained_cnn, eps=0.3, alpha=0.02, steps=30)
    ta.set_mode_targeted_least_likely(quiet=True)
    atk = from_torchattacks(ta)
    assert atk.targeted == "least-likely"
    res = atk.run(x, y)
    with torch.no_grad():
        assert torch.equal(res.success, trained_cnn(res.x_adv).argmax(1) == trained_cnn(x).argmin(1))
    assert res.success.float().mean() > 0.8


@pytest.mark.parametrize("configure,advice", [
    (lambda ta: ta.set_mode_targeted_by_label(quiet=True),
     r"^ta_attack is in torchattacks mode 'targeted\(label\)': wrap it in default mode and pass target= to the call"),
    (lambda ta: ta.set_normalization_used([0.5], [0.5]),
     r"^ta_attack uses set_normalization_used: .*put the normalisation inside the model \(advkit.models.Normalize\)"),
], ids=["label-mode", "normalized"])
def test_unsupported_torchattacks_settings_are_refused_with_advice(configure, advice, torchattacks):
    ta = torchattacks.PGD(tiny_model(), eps=0.1)
    configure(ta)
    with pytest.raises(ValueError, match=advice):
        from_torchattacks(ta)


def test_untargetable_attack_refuses_targets(torchattacks):
    atk = from_torchattacks(torchattacks.APGD(tiny_model(), eps=0.1, steps=2))
    with pytest.raises(ValueError, match=r"^target: TorchAttack does not support this target choice \(supported: none"):
        atk.run(sample_x("cnn", 2), torch.arange(2), target=torch.tensor([3, 4]))


def test_rejects_what_is_not_a_torchattacks_attack():
    with pytest.raises(TypeError, match="^ta_attack must be a torchattacks attack, got object$"):
        from_torchattacks(object())


def test_advkit_imports_without_torchattacks():
    """In a fresh interpreter (of this checkout) where importing torchattacks fails, advkit and its
    attacks import and still offer the adapter, which needs torchattacks only when called."""
    code = ("import sys; sys.modules['torchattacks'] = None; import advkit, advkit.attacks; "
            "print(advkit.__file__, 'from_torchattacks' in advkit.attacks.__all__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    path, offered = done.stdout.split()
    assert Path(path).resolve().is_relative_to(Path(__file__).resolve().parents[2]) and offered == "True"


def test_repr_shows_the_wrapped_budget_and_steps(torchattacks):
    atk = from_torchattacks(torchattacks.PGD(tiny_model(), eps=0.1, alpha=0.01, steps=5))
    assert repr(atk) == "from_torchattacks(PGD, eps=0.1, norm='linf', steps=5, alpha=0.01)"

"""The typed attack contract: every attack advkit builds is an ``AttackLike`` whose ``run`` takes what
``evaluate`` passes (warm starts included), ``run`` and ``__call__`` are final, the norm is chosen
once with its geometry, and ``targeted`` takes only the modes it names."""
from __future__ import annotations

import inspect
from typing import get_args

import pytest
import torch
from torch import nn

from advkit.attacks import ATTACKS, CW, PGD, Attack, AttackLike, AutoAttack, TargetMode, from_torchattacks
from advkit.attacks.adapter import TorchAttack
from advkit.attacks.base import TARGET_MODES
from advkit.core import get_norm

try:
    import torchattacks
except ImportError:  # the wrapped row drops out
    torchattacks = None


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def advkit_attack_classes() -> set[type]:
    """Every subclass of Attack defined in advkit, however deep."""
    found, todo = set(), [Attack]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("advkit.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def built_attacks(model: nn.Module) -> list:
    built = [cls(model, 0.1) for cls in ATTACKS.values()] + [AutoAttack(model)]
    if torchattacks is not None:
        built.append(from_torchattacks(torchattacks.PGD(model, eps=0.1, steps=2)))
    return built


def test_run_and_call_are_final_and_no_attack_overrides_them():
    assert Attack.run.__final__ and Attack.__call__.__final__
    classes = advkit_attack_classes()
    assert set(ATTACKS.values()) | {AutoAttack, TorchAttack} <= classes
    overriding = sorted(cls.__name__ for cls in classes if "run" in vars(cls) or "__call__" in vars(cls))
    assert not overriding, f"{overriding} override the final run/__call__; implement perturb instead"


def test_every_attack_is_attack_like_and_its_run_takes_the_contracts_arguments():
    wanted = inspect.signature(AttackLike.run).parameters
    for atk in built_attacks(tiny_model()):
        assert isinstance(atk, AttackLike), type(atk).__name__
        have = inspect.signature(type(atk).run).parameters
        for name, param in wanted.items():
            assert name in have and have[name].kind == param.kind and have[name].default == param.default, \
                (type(atk).__name__, name)


def test_an_object_lacking_part_of_the_contract_is_not_attack_like():
    class RunOnly:
        def run(self, x, y=None):
            return x

    assert not isinstance(RunOnly(), AttackLike)
    assert not isinstance(tiny_model(), AttackLike)


def test_autoattack_runs_through_the_final_run_warm_start_included():
    """AutoAttack has no run of its own: x_init and per-sample seeds arrive through Attack.run (what
    they do there: test_autoattack.py's warm-start test), and a target is refused with its own hint
    before the model runs."""
    model, calls = tiny_model(), []
    atk = AutoAttack(model)
    assert type(atk).run is Attack.run and atk.warm_starts and "x_init" in inspect.signature(atk.run).parameters
    model.register_forward_hook(lambda *a: calls.append(1))
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"^target: AutoAttack is untargeted \(APGD-T and FAB-T pick their own"):
        atk.run(x, torch.tensor([0, 1]), torch.tensor([2, 3]), x_init=x)
    assert not calls


def test_the_target_modes_are_the_literal_type():
    assert TARGET_MODES == get_args(TargetMode) == (False, "random", "least-likely")
    assert inspect.signature(Attack.__init__).parameters["targeted"].annotation == "TargetMode"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_targeted_true_is_refused_saying_what_to_pass_instead(name):
    with pytest.raises(ValueError, match=r"^targeted=True .*targeted='random'.*'least-likely'.*target= at the call"):
        ATTACKS[name](tiny_model(), 0.1, targeted=True)


def test_the_norm_is_a_name_backed_by_its_geometry_chosen_once():
    atk = PGD(tiny_model(), 0.1, norm="l2")
    assert atk.norm == "l2" and atk.geometry is get_norm("l2") and "norm='l2'" in repr(atk)
    atk.norm = "linf"
    assert atk.geometry is get_norm("linf") and "norm='linf'" in repr(atk)
    with pytest.raises(ValueError, match=r"^norm must be one of 'linf', 'l2', 'l1'; got 'l3'"):
        atk.norm = "l3"
    assert atk.norm == "linf"  # unchanged by the refused name
    with pytest.raises(ValueError, match=r"^norm must be one of 'l2'; got 'linf'"):
        CW(tiny_model(), norm="linf")  # a known norm the attack does not support

"""Attacks declare what they can do (``uses_gradients``, ``per_sample``, ``needs_training``, ``norms``,
``targets``, ``warm_starts``, ``losses``), every declaration is true, and evaluate's checks
and the defenses read the declarations, never the name an attack is reported under or
its exact type."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import APGD, APGDT, ATTACKS, CW, FAB, FGSM, MIFGSM, PGD, Attack, AutoAttack, HopSkipJump, Square
from advkit.attacks.adapter import from_torchattacks
from advkit.attacks.autoattack import component, standard
from advkit.attacks.base import TARGET_SOURCES
from advkit.attacks.capabilities import CAPABILITIES, capability, gradient_free, gradients_only, members
from advkit.core import NORMS
from advkit.defenses.adversaries import AttackAdversary, resolve_attack
from advkit.evaluation.checks import runs_stronger_attack
from advkit.evaluation.evaluate import fallback_name
from advkit.evaluation.results import AttackRecord


class NoiseSearch(Attack):
    """A user's own gradient-free attack: ``queries`` random corners of the L-inf ball, each sample
    keeping its best."""

    uses_gradients = False
    norms = ("linf",)
    queries = 5

    def perturb(self, run) -> None:
        run.forward_clean()
        with torch.no_grad():
            for _ in range(self.queries):
                signs = run.draw(run.x.shape[1:], lambda t, g: t.bernoulli_(0.5, generator=g)) * 2 - 1
                x_new = (run.x + run.eps * signs).clamp(0, 1)
                logits = run.logits(x_new)
                run.observe(None, x_new, logits, run.loss_fn(logits, run.labels, run.targeted))


class MyPGD(PGD):
    """A user's subclass of PGD (its draws stay per sample: it inherits ``per_sample``)."""


class PerBatchPGD(PGD):
    """A subclass whose author says its draws are not per sample."""

    per_sample = False


def tiny_model() -> nn.Module:
    """Rows that do not interact (a linear layer), so a sample's result can be the same in any batch."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


#: Small settings per class, so each attack runs in a blink.
SMALL = {FGSM: {}, PGD: {"steps": 3}, MIFGSM: {"steps": 3}, CW: {"steps": 3, "binary_steps": 1},
         APGD: {"steps": 3}, APGDT: {"steps": 3, "n_target_classes": 2}, FAB: {"steps": 3, "n_target_classes": 2},
         Square: {"n_queries": 10, "progress": False}, HopSkipJump: {"queries": 60, "init_evals": 10}}


def small(cls: type, model: nn.Module, eps: float = 0.1, **kwargs) -> Attack:
    return cls(model, eps, norm=cls.norms[0], **SMALL[cls], **kwargs)


def small_autoattack(model: nn.Module, eps: float = 0.1) -> AutoAttack:
    """The standard ensemble with every member's budget cut to a few steps or queries."""
    atk = AutoAttack(model, eps=eps, progress=False)
    budgets = {"apgd-ce": {"steps": 3}, "apgd-t": {"steps": 3, "n_target_classes": 2},
               "fab-t": {"steps": 3, "n_target_classes": 2}, "square": {"n_queries": 10}}
    atk.components = [component(name, model, eps, "linf", **budgets[name]) for name, _, _ in standard()]
    return atk


def backward_counter(model: nn.Module) -> list[int]:
    """A one-item list counting gradients that flow back through ``model``'s output."""
    count = [0]

    def hook(module, inputs, out) -> None:
        if out.requires_grad:
            out.register_hook(lambda g: count.__setitem__(0, count[0] + 1))

    model.register_forward_hook(hook)
    return count


def test_the_base_class_declares_every_capability_with_safe_defaults():
    assert CAPABILITIES == ("norms", "losses", "targets", "warm_starts", "uses_gradients", "per_sample",
                            "needs_training", "minimum_norm", "label_only", "transfer")
    assert (Attack.uses_gradients, Attack.per_sample, Attack.needs_training, Attack.warm_starts,
            Attack.minimum_norm, Attack.label_only, Attack.transfer) == (True, False, False, False, False, False, False)
    assert Attack.norms == tuple(NORMS) and Attack.targets == TARGET_SOURCES

    class RunOnly:  # an object evaluate accepts (it has run) that declares nothing
        def run(self, x, y=None):
            return x

    assert all(capability(RunOnly(), name) == getattr(Attack, name) for name in CAPABILITIES)
    with pytest.raises(ValueError, match="^unknown capability 'fast'; the capabilities: norms, losses"):
        capability(PGD(tiny_model()), "fast")


@pytest.mark.parametrize("cls", [*ATTACKS.values(), AutoAttack], ids=lambda c: c.__name__)
def test_every_attack_declares_each_capability_within_its_registry(cls):
    assert set(cls.norms) <= set(NORMS) and cls.norms
    assert set(cls.losses) <= set(Attack.losses) and set(cls.targets) <= set(TARGET_SOURCES)
    for name in ("warm_starts", "uses_gradients", "per_sample", "needs_training"):
        assert isinstance(getattr(cls, name), bool), name


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.__name__)
def test_uses_gradients_is_true_a_gradient_free_attack_never_calls_backward(cls):
    """Counted through the model's output: Square and HopSkipJump query alone; every other attack in
    ATTACKS sends gradients back through the model."""
    model = tiny_model()
    backwards = backward_counter(model)
    x = images()
    y = model(x).argmax(1)  # every sample correctly classified: each one is attacked
    result = small(cls, model).run(x, y)
    assert result.forwards > 0
    assert (backwards[0] > 0) == cls.uses_gradients and (result.backwards > 0) == cls.uses_gradients
    assert gradient_free(small(cls, model)) == (cls in (Square, HopSkipJump))


def test_a_declared_gradient_free_attack_of_ones_own_and_a_wrapped_one_call_no_backward(torchattacks):
    model = tiny_model()
    backwards = backward_counter(model)
    x = images()
    y = model(x).argmax(1)
    assert NoiseSearch(model, 0.1).run(x, y).forwards > 0 and backwards[0] == 0
    square = from_torchattacks(torchattacks.Square(model, eps=0.1, n_queries=10), uses_gradients=False)
    square.run(x, y)
    assert backwards[0] == 0 and gradient_free(square)
    pgd = from_torchattacks(torchattacks.PGD(model, eps=0.1, steps=2))
    assert pgd.uses_gradients and not pgd.per_sample and not pgd.needs_training
    pgd.run(x, y)
    assert backwards[0] > 0


@pytest.mark.parametrize("cls", [c for c in SMALL if c.per_sample] + [MyPGD], ids=lambda c: c.__name__)
def test_a_per_sample_attack_gives_a_sample_the_same_result_in_any_batch(cls):
    model = tiny_model()
    x = images(12)
    y = model(x).argmax(1)
    seeds = torch.arange(12) + 100
    atk = cls(model, 0.2, **SMALL.get(cls, SMALL[PGD]))
    whole = atk.run(x, y, seed=seeds)
    parts = [atk.run(x[rows], y[rows], seed=seeds[rows]) for rows in (slice(0, 5), slice(5, 12))]
    assert torch.equal(whole.success, torch.cat([p.success for p in parts]))
    assert torch.allclose(whole.x_adv, torch.cat([p.x_adv for p in parts]), atol=1e-6)


def test_per_sample_is_declared_by_the_attacks_that_draw_per_sample_and_no_other():
    assert {cls for cls in ATTACKS.values() if cls.per_sample} == {FGSM, PGD, MIFGSM, APGD, HopSkipJump}
    assert not APGDT.per_sample  # a subclass of APGD that seeds each target's search once per call
    assert not AutoAttack.per_sample and not Square.per_sample


def test_an_attack_that_needs_training_refuses_to_run_before_it_and_its_training_uses_gradients():
    model = tiny_model()
    atk = advkit.attacks.AdvGAN(model, eps=0.2, width=4, blocks=1)
    assert atk.needs_training and atk.uses_gradients
    assert not any(cls.needs_training for cls in [*ATTACKS.values(), AutoAttack])
    x = images(16)
    with pytest.raises(RuntimeError, match="AdvGAN has no trained generator yet"):
        atk.run(x)
    backwards = backward_counter(model)
    atk.fit((x, torch.zeros(16, dtype=torch.long)), steps=1, batch_size=16, progress=False)
    assert backwards[0] > 0  # the generator learns from the model's gradient
    trained = backwards[0]
    atk.run(x)
    assert backwards[0] == trained  # the attack itself is one forward of the generator


def test_an_ensembles_capabilities_follow_its_members():
    model = tiny_model()
    atk = AutoAttack(model)
    parts = members(atk)
    assert [type(p) for p in parts] == [cls for _, cls, _ in standard()] == [APGD, APGDT, FAB, Square]
    assert atk.uses_gradients == any(p.uses_gradients for p in parts) is True
    assert atk.per_sample == all(p.per_sample for p in parts) is False
    assert atk.needs_training == any(p.needs_training for p in parts) is False
    assert set(atk.norms) == set.intersection(*(set(p.norms) for p in parts))
    assert all("l1" in p.norms for p in members(AutoAttack(model, norm="l1")))
    # neither a gradient attack alone nor a gradient-free one: its curve holds Square's finds
    assert not gradients_only(atk) and not gradient_free(atk)
    pgd = PGD(model)
    assert members(pgd) == [pgd] and gradients_only(pgd) and not gradient_free(pgd)


# -- what evaluate, its checks and sharding, and the defenses read ------------------------------------


@pytest.mark.parametrize("make", [NoiseSearch, lambda m, eps: Square(m, eps, n_queries=20, progress=False)],
                         ids=["own-class", "square"])
def test_the_checks_read_a_gradient_free_attack_under_any_name(make):
    """{"sq": ...}: the gradient-free check reads the sq curve (no pass of its own) and compares it with
    the gradient attacks alone."""
    model = tiny_model()
    x = images(32, seed=1)
    y = model(x).argmax(1)
    report = advkit.evaluate(model, (x, y), attacks={"pgd": PGD(model, steps=3), "sq": make(model, 0.1)},
                             eps=[0, 0.05, 0.1], probe=16, queries=20, examples=0, progress=False, device="cpu")
    free = {c.name: c for c in report.checks}["gradient-free"]
    assert not free.skipped and free.message.startswith("the sq curve at eps=")
    assert "that every gradient attack (pgd) missed" in free.message
    assert free.cost.forwards == free.cost.backwards == 0


def test_the_added_gradient_free_attack_comes_only_when_none_ran_whatever_its_name():
    model = tiny_model()
    masked = AttackRecord("pgd", "", None, [], masked="no input gradient")
    ran = AttackRecord("sq", "", torch.ones(4, 2, dtype=torch.bool), [])
    records = {"pgd": masked, "sq": ran}
    assert fallback_name(records, {"pgd": PGD(model), "sq": NoiseSearch(model, 0.1)}) is None
    assert fallback_name(records, {"pgd": PGD(model), "sq": MyPGD(model)}) == "square"
    assert fallback_name({"square": masked}, {"square": PGD(model)}) == "square (added)"


def test_the_stronger_attack_check_reads_any_curve_whose_attack_contains_apgd_t():
    model = tiny_model()

    class MyAPGDT(APGDT):
        pass

    assert runs_stronger_attack(APGDT(model)) and runs_stronger_attack(MyAPGDT(model))
    assert runs_stronger_attack(AutoAttack(model))
    assert not runs_stronger_attack(APGD(model, loss="dlr")) and not runs_stronger_attack(PGD(model))


def test_adversarial_training_adapts_only_an_attack_that_needs_training():
    """The adversary trains the attack on the batch (``adapt``) when it declares ``needs_training``;
    an attack with an ``adapt`` method that does not is run as it is."""
    model = tiny_model()
    x, y = images(4), torch.zeros(4, dtype=torch.long)
    adapted = []

    class Adapting(PGD):
        def adapt(self, x, steps=1):
            adapted.append(len(x))

    class Learning(Adapting):
        needs_training = True

    AttackAdversary(lambda eps: Adapting(model, eps, steps=1))(x, y, 0.1, torch.arange(4), torch.arange(4))
    assert adapted == []
    AttackAdversary(lambda eps: Learning(model, eps, steps=1))(x, y, 0.1, torch.arange(4), torch.arange(4))
    assert adapted == [4]


def test_evaluate_says_when_an_attacks_class_cannot_work_in_its_norm():
    model = tiny_model()
    x = images(4)
    with pytest.raises(ValueError, match=r"^attack 'cw' works in norm 'l2' but the evaluation's norm is 'linf'; "
                                         r"CW works under 'l2' only: choose another attack$"):
        advkit.evaluate(model, (x, torch.zeros(4, dtype=torch.long)), attacks={"cw": CW(model, eps=1.0)}, eps=[0.1],
                        progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"evaluation's norm is 'l2'; build it with norm='l2'$"):
        advkit.evaluate(model, (x, torch.zeros(4, dtype=torch.long)), attacks={"pgd": PGD(model)}, eps=[0.1],
                        norm="l2", progress=False, device="cpu")


def test_training_refuses_a_named_attack_outside_its_norms():
    with pytest.raises(ValueError, match=r"^attack 'cw' works under norm 'l2' but training is under norm='linf'$"):
        resolve_attack("cw", tiny_model(), "linf", default=None)

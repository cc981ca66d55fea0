"""The promises every attack makes (docs/ARCHITECTURE.md, Conventions), checked for every class registered in
``advkit.attacks.ATTACKS`` (read at collection time, so a newly registered attack is covered
without touching this file) and for a torchattacks attack behind ``from_torchattacks``:

- the result lies in the eps-ball and [0, 1] and has x's shape, dtype and device;
- the model is untouched: parameters, BatchNorm statistics, requires_grad flags, ``.grad`` and
  the train/eval flag of every module;
- bad input raises a ValueError/TypeError naming the argument, before the model runs;
- eps = 0 returns x unchanged; same seed, same result; y=None attacks the predictions;
- the targeted modes reach their targets on a standard model at eps = 0.3, each attack at a bar
  set from its measured rate; a target choice an attack lacks is refused.
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advkit.attacks import ATTACKS, Attack, from_torchattacks
from advkit.attacks.base import TARGET_SOURCES

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from stats import binomial_bar  # noqa: E402

try:
    import torchattacks
except ImportError:  # the adapter rows simply drop out
    torchattacks = None

#: Keyword arguments that make any attack cheap, applied when its constructor has them.
CHEAP = {"steps": 3, "restarts": 1, "n_restarts": 1, "n_queries": 30, "queries": 30,
         "binary_steps": 2, "binary_search_steps": 2, "search_steps": 2, "iterations": 3, "max_iter": 3}
WRAPPED = "torchattacks.PGD"
NAMES = sorted(ATTACKS) + ([WRAPPED] if torchattacks is not None else [])
SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def build(name: str, model: nn.Module, eps: float = 0.1, budget: dict | None = None, **kwargs) -> Attack:
    """Attack ``name`` with the cheap budget (or ``budget``) that its constructor accepts."""
    if name == WRAPPED:
        return _wrapped_pgd(model, eps, (budget or CHEAP)["steps"], **kwargs)
    cls = ATTACKS[name]
    params = inspect.signature(cls.__init__).parameters
    cheap = {k: v for k, v in (budget or CHEAP).items() if k in params}
    return cls(model, eps=eps, **cheap, **kwargs)


def _wrapped_pgd(model: nn.Module, eps: float, steps: int, norm: str = "linf", targeted=False, seed: int = 0,
                 **kwargs) -> Attack:
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    ta = cls(model, eps=eps, alpha=2.5 * eps / steps, steps=steps)
    if targeted == "random":
        ta.set_mode_targeted_random(quiet=True)
    elif targeted == "least-likely":
        ta.set_mode_targeted_least_likely(quiet=True)
    return from_torchattacks(ta, seed=seed, **kwargs)


def norms_of(name: str) -> tuple[str, ...]:
    return ("linf", "l2") if name == WRAPPED else ATTACKS[name].norms


def kinds_of(name: str) -> tuple[str, ...]:
    """Input ranks to test: torchattacks' L2 attacks assume NCHW images, ours also take (N, D)."""
    return ("cnn",) if name == WRAPPED else ("cnn", "mlp")


def tiny_model(kind: str = "cnn", seed: int = 0) -> nn.Module:
    """A small model WITH BatchNorm and dropout, BN statistics warmed up (so a drift shows), one
    parameter frozen by the user and one pre-existing ``.grad``."""
    torch.default_generator.manual_seed(seed)  # torch.manual_seed also queues CUDA seeding with a traceback: 3 ms
    if kind == "cnn":
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                              nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    else:
        model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
    with torch.no_grad():
        for _ in range(3):
            model(sample_x(kind, 32, seed))
    model[0].bias.requires_grad_(False)
    model[-1].weight.grad = torch.full_like(model[-1].weight, 0.5)
    return model.eval()


def sample_x(kind: str, n: int, seed: int = 0, binary: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 8, 8) if kind == "cnn" else (n, 16), generator=g)
    return x.round() if binary else x


def snapshot(model: nn.Module) -> dict:
    """Everything an attack must leave as it was."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "training": [m.training for m in model.modules()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["training"] == after["training"], "train/eval flags changed"
    assert before["requires_grad"] == after["requires_grad"], "requires_grad flags changed"
    for a, b in zip(before["grad"], after["grad"], strict=True):
        assert (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b)), ".grad changed"
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"{key} changed"


def linf(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).abs().amax(1)


def l2(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(dim=1)


def l1(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).abs().sum(1)


# -- the result ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(eps=st.floats(0.0, 0.5), seed=st.integers(0, 2**31), n=st.integers(1, 6), binary=st.booleans(), data=st.data())
def test_result_in_ball_and_box_with_x_shape_dtype_device(name, eps, seed, n, binary, data):
    norm = data.draw(st.sampled_from(norms_of(name)), label="norm")
    kind = data.draw(st.sampled_from(kinds_of(name)), label="kind")
    eps = eps * {"linf": 1, "l2": 4, "l1": 8}[norm]
    x = sample_x(kind, n, seed, binary)
    atk = build(name, tiny_model(kind), eps, norm=norm, seed=seed)
    x_adv = atk(x, torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed)))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    dist = {"linf": linf, "l2": l2, "l1": l1}[norm]
    assert (dist(x_adv - x) <= eps * (1 + 1e-5) + 1e-6).all()


@pytest.mark.parametrize("name,kind", [(n, k) for n in NAMES for k in kinds_of(n)])
@pytest.mark.parametrize("mode", ["eval", "train", "mixed"])
def test_model_untouched(name, kind, mode):
    model = tiny_model(kind)
    model.train(mode != "eval")
    if mode == "mixed":
        model[3].eval()  # the user's own choice for one submodule must survive too
    before = snapshot(model)
    x = sample_x(kind, 8, seed=1)
    for norm in norms_of(name):
        build(name, model, 0.2, norm=norm).run(x, torch.arange(8) % 10)
        mode = next((m for m in ("least-likely", "random") if m in targets_of(name)), None)
        if mode is not None:
            build(name, model, 0.2, norm=norm, targeted=mode).run(x)
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("name", NAMES)
def test_model_untouched_when_it_raises(name):
    model = tiny_model().train()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"^y must lie in \[0, 10\); saw 0\.\.99$"):
        build(name, model, 0.1).run(sample_x("cnn", 4), torch.tensor([0, 1, 2, 99]))
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("name", NAMES)
def test_eps_zero_returns_x_unchanged(name):
    model, x = tiny_model(), sample_x("cnn", 6, seed=2)
    for norm in norms_of(name):
        assert torch.equal(build(name, model, 0.0, norm=norm)(x, torch.arange(6)), x)
        assert torch.equal(build(name, model, 0.3, norm=norm).run(x, torch.arange(6), eps=0.0).x_adv, x)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(seed=st.integers(0, 2**31))
def test_same_seed_same_result(name, seed):
    model, x = tiny_model(), sample_x("cnn", 6, seed=seed)
    first = build(name, model, 0.2, seed=seed)(x)
    assert torch.equal(first, build(name, model, 0.2, seed=seed)(x))


@pytest.mark.parametrize("name", NAMES)
def test_y_none_attacks_the_predictions(name):
    model, x = tiny_model(), sample_x("cnn", 8, seed=3)
    with torch.no_grad():
        pred = model(x).argmax(1)
    atk = build(name, model, 0.2)
    assert torch.equal(atk(x), atk(x, pred))


# -- validation ------------------------------------------------------------------------------
def _bad_inputs():
    """Each case: (x, y, the start of the one-line message, which names the argument first)."""
    x, y = sample_x("cnn", 4), torch.arange(4)
    nan, inf = x.clone(), x.clone()
    nan[0, 0, 0, 0], inf[1, 0, 2, 2] = float("nan"), float("inf")
    box = r"x must lie in \[0, 1\] \(normalise inside the model with advkit.models.Normalize\); saw min"
    rank = r"x must be a batch of shape \(N, C, H, W\) or \(N, D\), got shape"
    return {
        "nan": (nan, y, "x contains NaN or Inf values"), "inf": (inf, y, "x contains NaN or Inf values"),
        "above-1": (x + 1.5, y, box), "below-0": (x - 1.5, y, box),
        "rank-3": (x[:, 0], y, rank + r" \(4, 8, 8\)"), "rank-5": (x[None], y, rank + r" \(1, 4, 1, 8, 8\)"),
        "int-pixels": ((x * 255).long(), y, r"x must be a floating tensor in \[0, 1\], got dtype torch.int64"),
        "numpy": (x.numpy(), y, "x must be a torch.Tensor, got ndarray"),
        "y-short": (x, y[:3], r"y must have shape \(4,\) to match the batch, got \(3,\)"),
        "y-2d": (x, y[:, None], r"y must have shape \(4,\) to match the batch, got \(4, 1\)"),
        "y-float": (x, y.float(), "y must hold integer class indices, got dtype torch.float32"),
        "y-out-of-range": (x, y + 10, r"y must lie in \[0, 10\); saw 10\.\.13"),
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_input_raises_naming_the_argument_before_any_work(name, case):
    x, y, message = _bad_inputs()[case]
    model, calls = tiny_model(), []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises((ValueError, TypeError), match=f"^{message}"):
        build(name, model, 0.1).run(x, y)
    assert len(calls) <= (1 if case == "y-out-of-range" else 0), "the model ran before the input was checked"


@pytest.mark.parametrize("name", NAMES)
def test_bad_target_raises(name):
    x = sample_x("cnn", 4)
    with pytest.raises(ValueError, match=r"^target must have shape \(4,\) to match the batch, got \(3,\)$"):
        build(name, tiny_model(), 0.1).run(x, torch.arange(4), target=torch.arange(3))


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("kwargs,message", [({"eps": -0.1}, r"^eps must be finite and >= 0, got -0\.1$"),
                                            ({"eps": float("nan")}, "^eps must be finite and >= 0, got nan$"),
                                            ({"norm": "l3"}, "^norm must be one of 'linf', 'l2', 'l1'; got 'l3'$"),
                                            ({"loss": "hinge-ish"}, "^loss must be one of .*; got 'hinge-ish'$")])
def test_bad_settings_raise_naming_the_argument(name, kwargs, message):
    kwargs = {"eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        build(name, tiny_model(), **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_negative_eps_at_call_raises(name):
    with pytest.raises(ValueError, match=r"^eps must be finite and >= 0, got -1\.0$"):
        build(name, tiny_model(), 0.1).run(sample_x("cnn", 2), torch.arange(2), eps=-1.0)


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = tiny_model()

    def forward(self, x):
        return {"logits": self.net(x)}


def _flat_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("make", [DictModel, _flat_model], ids=["dict-output", "N-output"])
def test_model_with_wrong_output_gets_a_helpful_message(name, make):
    with pytest.raises(TypeError, match=r"logits of shape \(N, num_classes\).*(Wrap|wrap|binary)"):
        build(name, make(), 0.1).run(sample_x("cnn", 4), torch.arange(4))


# -- targeted modes on a standard model ----------------------------------------------------------
#: Targeted success rates measured on the trained SmallCNN (first 64 mnist5k test images, budget
#: below, seeds 0-2, lowest of the three; FGSM on 256 images): each attack is held to its own
#: rate minus three binomial standard deviations. A mode an attack cannot do is absent from its
#: ``targets`` and must be refused; every registered attack needs a row here.
MEASURED_TARGETED = {
    "fgsm": {"given": 0.48, "random": 0.47, "least-likely": 0.10},  # one signed step of 0.3
    "pgd": {"given": 0.97, "random": 0.98, "least-likely": 0.95},
    "mifgsm": {"given": 0.92, "random": 0.90, "least-likely": 0.67},  # the paper's alpha = eps/steps, from x
    "apgd": {"given": 0.97, "random": 0.98, "least-likely": 0.97},
    "apgd-t": {"given": 0.94, "random": 0.98, "least-likely": 0.87},
    "square": {"given": 0.76, "random": 0.75, "least-likely": 0.43},  # 300 queries of random search
    "cw": {"given": 1.0, "random": 1.0, "least-likely": 1.0},
    "fab-t": {"given": 0.92, "random": 0.98, "least-likely": 0.81},  # deterministic: no random start
    "hopskipjump": {"given": 0.06, "random": 0.05},  # 300 top-1 queries; least-likely needs the logits
}
#: Budgets long enough for a targeted attack to land (still small on mnist).
TARGETED_BUDGET = {"steps": 40, "n_queries": 300, "queries": 300, "binary_steps": 2, "binary_search_steps": 2}
TARGETED_OVERRIDES = {"cw": {"steps": 100, "binary_steps": 3}}  # 40 steps x 2 searches reach 9-42%
TARGETED_L2 = {"cw": 5.0}  # CW minimises the L2 norm: least-likely targets need a median 2.9, so 3.0 clips half
TARGETED_SAMPLES = {"fgsm": 256, "cw": 16}  # CW: 300 gradient steps a sample, and it lands on every one (of 32 too)
WRAPPED_ROW = {"given": 0.97, "random": 0.98, "least-likely": 0.95}  # torchattacks.PGD: PGD's rates


def targets_of(name: str) -> tuple[str, ...]:
    return TARGET_SOURCES if name == WRAPPED else ATTACKS[name].targets


def test_every_registered_attack_has_measured_targeted_rates():
    missing = sorted(set(ATTACKS) - set(MEASURED_TARGETED))
    assert not missing, f"measure the targeted success rates of {missing} and add them to MEASURED_TARGETED"


def _targeted_cases():
    """Every attack and mode; CW's (300 gradient steps on 32 images each) are slow."""
    return [pytest.param(name, mode, marks=[pytest.mark.slow] if name == "cw" else [])
            for name in NAMES for mode in TARGET_SOURCES]


@pytest.mark.parametrize("name,mode", _targeted_cases())
def test_targeted_modes_reach_their_targets_or_are_refused(name, mode, trained_cnn, mnist5k):
    n = TARGETED_SAMPLES.get(name, 64)
    x, y = mnist5k[1].tensors[0][:n], mnist5k[1].tensors[1][:n]
    target = (y + 1 + torch.arange(n) % 9) % 10 if mode == "given" else None
    norm = "linf" if "linf" in norms_of(name) else "l2"  # L2-only attacks get a comparable L2 budget
    budget = {**TARGETED_BUDGET, **TARGETED_OVERRIDES.get(name, {})}
    eps = 0.3 if norm == "linf" else TARGETED_L2.get(name, 3.0)
    targeted = False if mode == "given" else mode
    if mode not in targets_of(name):
        with pytest.raises(ValueError, match=r"does not support this target choice"):
            build(name, trained_cnn, eps, budget=budget, norm=norm, targeted=targeted).run(x, y, target)
        return
    res = build(name, trained_cnn, eps, budget=budget, norm=norm, targeted=targeted).run(x, y, target)
    with torch.no_grad():
        adv_logits = trained_cnn(res.x_adv)
        pred = adv_logits.argmax(1)
        logits = trained_cnn(x)
    expected = target if mode == "given" else None
    if mode == "least-likely":
        expected = logits.argmin(1)
    if expected is not None:
        # A minimal-distortion attack (FAB, CW) may stop on the decision boundary itself, where a forward
        # over another batch size rounds the other way: only such exact ties may disagree with the attack.
        disagree = res.success != (pred == expected)
        rivals = adv_logits.scatter(1, expected[:, None], float("-inf")).amax(1)
        margin = adv_logits.gather(1, expected[:, None]).squeeze(1) - rivals
        assert bool((margin[disagree].abs() < 1e-3).all()), margin[disagree]
    else:  # random targets: never the true class, and success means the model says some other class
        assert bool((pred[res.success] != y[res.success]).all())
    rate = (WRAPPED_ROW if name == WRAPPED else MEASURED_TARGETED[name])[mode]
    assert res.success.float().mean() >= binomial_bar(rate, n), f"{name} {mode}: measured {rate:.2f} on {n} images"


class _UntargetedOnly(Attack):
    """An attack that can only push away from the true class."""

    targets = ()

    def perturb(self, run):
        run.forward_clean()


def test_a_target_choice_the_attack_lacks_is_refused_before_any_work():
    model, calls = tiny_model(), []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"^targeted='random': _UntargetedOnly does not support this target choice"):
        _UntargetedOnly(model, 0.1, targeted="random")
    with pytest.raises(ValueError, match=r"^target: _UntargetedOnly does not support this target choice"):
        _UntargetedOnly(model, 0.1).run(sample_x("cnn", 2), torch.arange(2), target=torch.tensor([3, 4]))
    assert not calls

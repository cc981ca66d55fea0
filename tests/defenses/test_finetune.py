"""Adversarial fine-tuning (advkit.defenses.finetune) on small data: it lifts robust accuracy, keeps clean
accuracy, mixes clean and adversarial rows as asked, takes every form of attack, is reproducible, and
bad arguments fail before any work.

A small MLP trained on scikit-learn's 8x8 digits (1,437 training images) is fine-tuned: well under a
CPU second per run.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import FGSM, PGD, generate
from advkit.defenses import finetune

#: The module's tests share a heavy module-scoped fixture: one xdist worker runs them all (conftest.py).
pytestmark = pytest.mark.xdist_group("finetune")

EPS = 0.2
BATCH = 64
BATCHES = 1437 // BATCH  # per epoch (the last partial batch is dropped)
FEW = 5


@pytest.fixture(scope="module")
def digits():
    return advkit.data.load("digits")


@pytest.fixture(scope="module")
def standard_weights(digits):
    """Per seed, the weights of an MLP trained on the digits without any defense."""
    weights = {}
    for seed in range(3):
        model = mlp(seed)
        advkit.train.fit(model, digits[0], epochs=10, lr=1e-2, seed=seed, shift=0, device="cpu", progress=False)
        weights[seed] = model.state_dict()
    return weights


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def standard(weights, seed: int = 0) -> nn.Module:
    model = mlp(seed)
    model.load_state_dict(weights[seed])
    return model.eval()


def tune(model: nn.Module, data, **kwargs):
    settings = {"eps": EPS, "epochs": 1, "lr": 1e-2, "batch_size": BATCH, "progress": False, "device": "cpu",
                **kwargs}
    return finetune(model, data, **settings)


def robust_accuracy(model: nn.Module, x, y) -> float:
    x_adv = PGD(model, EPS, steps=20, seed=1)(x, y)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


class Spy(nn.Module):
    """Records every forward: whether the model was in train mode, whether the input needed a gradient
    (an attack crafting), and the input."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append((self.training, x.requires_grad, x.detach().clone()))
        return self.inner(x)

    def crafting(self) -> list[int]:
        """The batch sizes of the forwards an attack made on more than :data:`FEW` images (the per-epoch
        evaluation on ``few(digits)`` attacks no more)."""
        return [len(x) for _, needs_grad, x in self.calls if needs_grad and len(x) > FEW]

    def trained_on(self) -> list[torch.Tensor]:
        """The batches of the train-mode forwards (what the network descended)."""
        return [x for training, _, x in self.calls if training]


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def few(digits) -> tuple[torch.Tensor, torch.Tensor]:
    """:data:`FEW` test digits: evaluation data whose attack the spy can tell from the training's."""
    x, y = digits[1].tensors
    return x[:FEW], y[:FEW]


def rows_of(batch: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Whether each row of ``batch`` is exactly (bit for bit) some row of ``pool``."""
    known = {row.numpy().tobytes() for row in pool.flatten(1)}
    return torch.tensor([row.numpy().tobytes() in known for row in batch.flatten(1)], dtype=torch.bool)


# ---- it defends, at a bounded cost -------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finetuning_lifts_robust_accuracy_and_keeps_clean_accuracy(digits, standard_weights, seed):
    """Measured on seeds 0-5, PGD-20 at eps 0.2 on the 360 test digits: the standard MLPs 0.3-1.4%, fine-tuned
    for 3 epochs 25.8-30.0% (a gain of at least 25 points); clean accuracy 96.1% before, 93.9-95.0% after (a
    cost of 1.1-2.2 points). The bar of 15 points lies over 4 binomial standard errors (2.3 points) below
    the smallest gain; the clean bound, 6 points, 3 standard errors (1.3 points) beyond the largest cost."""
    (x, y) = digits[1].tensors
    model = standard(standard_weights, seed)
    before = robust_accuracy(model, x, y), advkit.train.accuracy(model, digits[1])
    model, _ = tune(model, digits[0], epochs=3, seed=seed)
    after = robust_accuracy(model, x, y), advkit.train.accuracy(model, digits[1])
    assert after[0] > before[0] + 0.15, (before, after)
    assert after[1] > before[1] - 0.06, (before, after)


def test_history_holds_the_accuracies_before_and_after_each_epoch(digits, standard_weights):
    model = standard(standard_weights)
    clean_before = advkit.train.accuracy(model, digits[1])
    model, history = tune(model, digits[0], epochs=2, eval_data=digits[1])
    assert not model.training
    assert [r.epoch for r in history] == [0, 1, 2] and history.evaluated_on == "eval_data"
    assert history[0].clean_accuracy == clean_before and history[0].robust_accuracy < 0.05
    assert history[-1].clean_accuracy == advkit.train.accuracy(model, digits[1])
    assert history[-1].robust_accuracy > history[0].robust_accuracy + 0.1
    assert all(r.eps == EPS for r in history)


# ---- the mix ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mix, attacked", [(0.5, 32), (0.25, 16), (1.0, 64)])
def test_a_share_mix_of_each_batch_is_adversarial_and_the_rest_clean(digits, standard_weights, mix, attacked):
    """PGD-10 (the default) crafts the first round(mix * 64) rows of each batch of 64; the network descends
    the whole batch: those rows adversarial (none of them a training image), the others clean images."""
    x = digits[0].tensors[0]
    spy = Spy(standard(standard_weights))
    tune(spy, digits[0], mix=mix, eval_data=few(digits))
    assert spy.crafting() == [attacked] * 10 * BATCHES
    batches = spy.trained_on()
    assert len(batches) == BATCHES and all(len(b) == BATCH for b in batches)
    for batch in batches:
        assert not rows_of(batch[:attacked], x).any() and rows_of(batch[attacked:], x).all()


def test_mix_zero_is_plain_training_on_clean_data(digits, standard_weights):
    """No attack runs, so the attack named does not matter: the same weights whichever it is."""
    spy = Spy(standard(standard_weights))
    tune(spy, digits[0], mix=0.0, epochs=2, eval_data=few(digits))
    assert spy.crafting() == [] and all(rows_of(b, digits[0].tensors[0]).all() for b in spy.trained_on())
    other, _ = tune(standard(standard_weights), digits[0], mix=0.0, epochs=2, attack="fgsm")
    assert same_weights(spy.inner, other)


# ---- the forms of attack ----------------------------------------------------------------------------

def test_an_attack_name_builds_that_attack(digits, standard_weights):
    spy = Spy(standard(standard_weights))
    tune(spy, digits[0], attack="fgsm", eval_data=few(digits))
    assert spy.crafting() == [32] * BATCHES  # one gradient per batch


def test_an_attack_object_runs_at_the_finetuning_eps(digits, standard_weights):
    spy = Spy(standard(standard_weights))
    x = digits[0].tensors[0]
    tune(spy, digits[0], attack=PGD(spy, eps=0.05, steps=3, early_stop=False), eps=0.1, eval_data=few(digits))
    assert spy.crafting() == [32] * 3 * BATCHES
    # each adversarial row lies within 0.1 of its own image, so at most that far from the nearest one; rows
    # farther than 0.05 from every image prove the attack ran at the fine-tuning eps, not at its own 0.05
    nearest = torch.cat([(b[:32, None] - x[None]).abs().flatten(2).amax(2).min(1).values for b in spy.trained_on()])
    assert float(nearest.max()) <= 0.1 + 1e-6 and float(nearest.max()) > 0.05


def test_a_torchattacks_attack_works(digits, standard_weights, torchattacks):
    spy = Spy(standard(standard_weights))
    tune(spy, digits[0], attack=torchattacks.PGD(spy, eps=EPS, alpha=EPS / 4, steps=2), eval_data=few(digits))
    assert spy.crafting() == [32] * 2 * BATCHES


def test_a_factory_is_called_again_for_every_batch_on_the_model_being_tuned(digits, standard_weights):
    """Called once more before training (a check of what it returns); each call sees the weights of its step."""
    model = standard(standard_weights)
    seen = []

    def factory(m: nn.Module) -> FGSM:
        seen.append((m, m[1].weight.detach().clone()))
        return FGSM(m, EPS)

    tune(model, digits[0], attack=factory, epochs=2)
    assert len(seen) == 2 * BATCHES + 1 and all(m is model for m, _ in seen)
    weights = [w for _, w in seen]
    steps = zip(weights[1:-1], weights[2:], strict=True)
    assert torch.equal(weights[0], weights[1]) and not any(torch.equal(a, b) for a, b in steps)


def test_a_fixed_set_from_generate_is_trained_on_and_no_attack_runs(digits, standard_weights):
    x = digits[0].tensors[0]
    made = generate(PGD(standard(standard_weights), EPS, steps=5), digits[0], progress=False)
    spy = Spy(standard(standard_weights))
    tuned, _ = tune(spy, digits[0], attack=made, epochs=2, eval_data=few(digits))
    assert spy.crafting() == []
    training = spy.trained_on()
    assert len(training) == 2 * BATCHES
    for batch in training:
        assert rows_of(batch[:32], made.tensors[0]).all() and rows_of(batch[32:], x).all()
    from_tensor, _ = tune(standard(standard_weights), digits[0], attack=made.tensors[0], epochs=2,
                          eval_data=few(digits))
    assert same_weights(tuned.inner, from_tensor)


# ---- reproducibility --------------------------------------------------------------------------------

def test_same_seed_same_weights_other_seed_other_weights(digits, standard_weights):
    runs = [tune(standard(standard_weights), digits[0], seed=seed)[0] for seed in (3, 3, 4)]
    assert same_weights(runs[0], runs[1]) and not same_weights(runs[0], runs[2])


# ---- errors -----------------------------------------------------------------------------------------

def bad_cases(digits):
    x, y = digits[0].tensors
    made = generate(PGD(mlp(), EPS, steps=1), (x[:100], y[:100]), progress=False)
    shuffled = torch.utils.data.TensorDataset(made.tensors[0], made.tensors[1].roll(1))
    return [
        ({"mix": -0.1}, ValueError, "mix must be a finite number >= 0 and <= 1"),
        ({"mix": 1.5}, ValueError, "mix must be a finite number >= 0 and <= 1"),
        ({"eps": 0}, ValueError, "eps must be > 0"),
        ({"eps": -0.1}, ValueError, "eps must be finite and >= 0"),
        ({"norm": "l3"}, ValueError, "norm must be one of 'linf', 'l2', 'l1'"),
        ({"epochs": 0}, ValueError, "epochs must be a finite integer >= 1"),
        ({"lr": 0.0}, ValueError, "lr must be a finite number > 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be a finite integer >= 1"),
        ({"attack": "deepfool"}, ValueError, "attack must be one of"),
        ({"attack": 3}, TypeError, "attack must be None, an attack name"),
        ({"attack": PGD(nn.Linear(64, 10), 0.2)}, ValueError, "attack attacks another model"),
        ({"attack": made}, ValueError, r"attack: the adversarial set's labels do not match data's \(100 vs 1437"),
        ({"attack": made.tensors[0]}, ValueError, r"attack: the adversarial images have shape \(100, 1, 8, 8\)"),
        ({"attack": x + 0.5}, ValueError, r"attack \(the adversarial images\) must lie in \[0, 1\]"),
        ({"attack": (x + 0.3).clamp(0, 1)}, ValueError, "lie up to 0.3 from data's under norm='linf', beyond eps=0.2"),
        ({"eval_data": [1, 2, 3]}, TypeError, "eval_data: data must be a Dataset"),
    ], (x[:100], y[:100]), shuffled


def test_bad_arguments_fail_before_any_work(digits, standard_weights):
    cases, small, shuffled = bad_cases(digits)
    for kwargs, error, message in cases:
        model = standard(standard_weights)
        with pytest.raises(error, match=message):
            tune(model, digits[0], **kwargs)
        assert all(torch.equal(standard_weights[0][k], v) for k, v in model.state_dict().items()), kwargs
    with pytest.raises(ValueError, match="attack: the adversarial set's labels do not match data's"):
        tune(standard(standard_weights), small, attack=shuffled)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        finetune("model", digits[0])

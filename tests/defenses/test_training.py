"""Adversarial training (advkit.defenses.training) on small data: it defends, its guard fires on a
collapse, TRADES' loss is its formula, runs are reproducible and resume bit-exactly, and bad
arguments fail before any work.

Most tests train a small MLP on scikit-learn's 8x8 digits (1,437 training images): about a CPU
second per run.
"""
from __future__ import annotations

import logging
import math
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advkit
from advkit.attacks import PGD
from advkit.checkpoints import CheckpointFolder
from advkit.defenses.adversaries import FastAdversary
from advkit.defenses.losses import kl_divergence, trades_loss
from advkit.defenses.training import adversarial_training

EPS = 0.2  # on digits, where 0.3 leaves these small models no robustness to learn


@pytest.fixture(scope="module")
def digits():
    return advkit.data.load("digits")


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def train(model: nn.Module, data, **kwargs):
    settings = {"eps": EPS, "epochs": 10, "lr": 1e-2, "batch_size": 64, "progress": False, "eval_size": 32,
                "device": "cpu", **kwargs}
    if settings.get("method", "pgd") != "fgsm-rs" and settings.get("attack") is None:
        settings.setdefault("steps", 5)
    return adversarial_training(model, data, **settings)


def robust_accuracy(model: nn.Module, x, y, attack=None) -> float:
    x_adv = (attack or PGD(model, EPS, steps=20, seed=1))(x, y)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---- it defends ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["pgd", "trades"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adversarial_training_beats_standard_training_under_pgd(digits, torchattacks, method, seed):
    """Measured on 3 seeds, PGD-20 at eps 0.2 on the 360 test digits (ours / torchattacks'): standard
    training 0.6-1.4% / 0.8-1.1%, PGD-AT 45-46% / 42-44%, TRADES 43-45% / 44-47%, clean accuracy 93-95%.
    The bar of 25 points lies 6 binomial standard errors below the smallest gap."""
    train_set, (x, y) = digits[0], digits[1].tensors
    standard = mlp(seed)
    advkit.train.fit(standard, train_set, epochs=10, lr=1e-2, seed=seed, shift=0, device="cpu", progress=False)
    robust, _ = train(mlp(seed), train_set, method=method, seed=seed)
    ours = [robust_accuracy(m, x, y) for m in (standard, robust)]
    theirs = [robust_accuracy(m, x, y, torchattacks.PGD(m, eps=EPS, alpha=EPS / 8, steps=20, random_start=True))
              for m in (standard, robust)]
    assert ours[1] > ours[0] + 0.25 and theirs[1] > theirs[0] + 0.25, (ours, theirs)
    assert advkit.train.accuracy(robust, digits[1]) > 0.85  # robust, and still a classifier


def test_model_comes_back_in_eval_mode_with_one_record_per_epoch(digits):
    model, history = train(mlp(), digits[0], epochs=3, warmup=0.5, eval_data=digits[1])
    assert not model.training
    assert [r.epoch for r in history] == [1, 2, 3] and history.evaluated_on == "eval_data"
    assert history[-1].eps == EPS and history[0].eps < EPS  # the warm-up ramps eps up
    assert all(0 <= r.robust_accuracy <= r.clean_accuracy <= 1 and r.seconds > 0 for r in history)
    assert history[-1].clean_accuracy == advkit.train.accuracy(model, digits[1])


class ModeSpy(nn.Module):
    """Records, per forward, whether the model was in train mode and whether the input needed a gradient."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append((self.training, x.requires_grad))
        return self.inner(x)


@pytest.mark.parametrize("method", ["pgd", "trades", "fgsm-rs"])
def test_attacks_are_crafted_in_eval_mode_and_the_loss_computed_in_train_mode(digits, method):
    model = ModeSpy(mlp())
    x, y = digits[0].tensors
    train(model, (x[:256], y[:256]), method=method, epochs=1, eval_size=8)
    crafting = [mode for mode, needs_grad in model.calls if needs_grad]
    assert crafting and not any(crafting)
    batches = 3 if method == "fgsm-rs" else 4  # of 64 (fgsm-rs holds 25 images out for its guard)
    assert sum(1 for mode, _ in model.calls if mode) == (2 if method == "trades" else 1) * batches


# ---- TRADES' loss -------------------------------------------------------------------------------

def test_trades_loss_matches_its_formula_on_a_hand_computed_case():
    # sample 1: p(x) = (1/4, 3/4), p(x_adv) = (1/2, 1/2), label 1
    # sample 2: p(x) = (1/2, 1/2), p(x_adv) = (3/4, 1/4), label 0
    clean = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    adv = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])
    y = torch.tensor([1, 0])
    kl = [0.25 * math.log(0.5) + 0.75 * math.log(1.5), 0.5 * math.log(2 / 3) + 0.5 * math.log(2)]
    ce = [math.log(4 / 3), math.log(2)]
    assert kl_divergence(clean, adv).tolist() == pytest.approx(kl, abs=1e-6)
    expected = (ce[0] + ce[1]) / 2 + 6.0 * (kl[0] + kl[1]) / 2
    assert float(trades_loss(clean, adv, y, beta=6.0)) == pytest.approx(expected, abs=1e-6)
    assert float(trades_loss(clean, clean, y, beta=6.0)) == pytest.approx(sum(ce) / 2, abs=1e-6)  # no KL at x_adv = x
    reference = F.kl_div(F.log_softmax(adv, 1), F.softmax(clean, 1), reduction="batchmean")  # TRADES' own code
    assert float(kl_divergence(clean, adv).mean()) == pytest.approx(float(reference), abs=1e-6)


# ---- FGSM-RS's guard ----------------------------------------------------------------------------

def epoch_weights(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """The weights each epoch ended with, in order, copied as the run's checkpoint is written (a run
    with a ``checkpoint_dir`` saves one after every epoch)."""
    saved: list[dict[str, torch.Tensor]] = []
    save = CheckpointFolder.save

    def recording(self, state, *args, **kwargs):
        saved.append({k: v.clone() for k, v in state["model"].items()})
        return save(self, state, *args, **kwargs)

    monkeypatch.setattr(CheckpointFolder, "save", recording)
    return saved


def best_of(history):
    """The record the guard keeps: the highest held-out accuracy, the later epoch on a tie."""
    return max(history, key=lambda r: (r.guard_accuracy, r.epoch))


def assert_weights(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], v) for k, v in expected.items())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fgsm_rs_guard_fires_on_a_collapse_and_keeps_the_best_weights(digits, caplog, monkeypatch, tmp_path, seed):
    """A robust model trained on with an attack too weak to matter (steps of 0.01·eps from the random
    start: noise) loses its robustness within a few epochs (measured on seeds 0-5: held-out PGD accuracy
    0.25-0.36 after epoch 1, 0.05-0.11 by epoch 2 to 5). The guard must stop there, with the weights of
    the best epoch, which the run's records name (epoch 1 on each of those seeds)."""
    model, _ = train(mlp(seed), digits[0], seed=seed)
    saved = epoch_weights(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="advkit.defenses.training"):
        model, history = train(model, digits[0], method="fgsm-rs", step=0.01, start="random", noise=1.0,
                               warmup=0.0, epochs=8, eval_data=digits[1], seed=seed, checkpoint_dir=tmp_path)
    assert history.guard_fired is not None and history.guard_fired == len(history) == len(saved) < 8
    best = best_of(history)
    assert history.best_epoch == best.epoch < len(history)
    assert history[-1].guard_accuracy < best.guard_accuracy - 0.2  # the default guard_drop
    assert "catastrophic overfitting" in caplog.text
    assert_weights(model, saved[best.epoch - 1])


@pytest.mark.parametrize("seed", range(6))
def test_fgsm_rs_ends_with_the_weights_of_its_best_epoch(digits, monkeypatch, tmp_path, seed):
    """Under Wong et al.'s recipe (random start, steps of 1.25·eps) the held-out accuracy peaks at
    some epoch (measured: epoch 5 of 6 for seeds 0 and 2, 4 for seed 3, the last for seeds 1, 4 and 5):
    whichever it is, the run returns exactly the weights that epoch ended with."""
    saved = epoch_weights(monkeypatch)
    model, history = train(mlp(seed), digits[0], method="fgsm-rs", start="random", step=1.25, noise=1.0, epochs=6,
                           eval_data=digits[1], seed=seed, checkpoint_dir=tmp_path)
    assert len(history) == len(saved) == (6 if history.guard_fired is None else history.guard_fired)
    assert history.best_epoch == best_of(history).epoch
    assert_weights(model, saved[history.best_epoch - 1])


# ---- reproducibility and resuming -----------------------------------------------------------------

class Interrupt(Exception):
    pass


def count_forwards(model: nn.Module, interrupt_at: int = 0) -> list[int]:
    """Count ``model``'s forwards in the returned list; raise Interrupt at the ``interrupt_at``-th (a crash)."""
    count = [0]

    def hook(module, inputs, output):
        count[0] += 1
        if count[0] == interrupt_at:
            raise Interrupt

    model.register_forward_hook(hook)
    return count


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs"])
def test_interrupted_training_resumes_to_the_same_weights(digits, tmp_path, method):
    data = (digits[0].tensors[0][:512], digits[0].tensors[1][:512])
    kwargs = {"method": method, "epochs": 3, "eval_size": 8, "seed": 3}
    reference = mlp()
    forwards = count_forwards(reference)
    reference, ref_history = train(reference, data, checkpoint_dir=tmp_path / "a", **kwargs)

    model = mlp()
    count_forwards(model, interrupt_at=forwards[0] * 6 // 10)  # in the middle of the second epoch
    with pytest.raises(Interrupt):
        train(model, data, checkpoint_dir=tmp_path / "b", **kwargs)
    resumed, history = train(mlp(seed=7), data, checkpoint_dir=tmp_path / "b", resume=True, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(weights(reference).values(), weights(resumed).values(), strict=True))
    strip = [{**vars(r), "seconds": 0} for r in ref_history], [{**vars(r), "seconds": 0} for r in history]
    assert strip[0] == strip[1]
    finished = mlp(seed=7)  # resuming a finished run loads its weights and trains no further
    count = count_forwards(finished)
    finished, history = train(finished, data, checkpoint_dir=tmp_path / "a", resume=True, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(weights(reference).values(), weights(finished).values(), strict=True))
    assert len(history) == 3 and count[0] < 3  # the label check's forward, nothing more


def test_same_seed_same_numbers_other_seed_other_numbers(digits):
    data = (digits[0].tensors[0][:256], digits[0].tensors[1][:256])
    runs = [train(mlp(), data, method="trades", epochs=2, seed=s, eval_size=8) for s in (0, 0, 1)]
    values = [run[0].state_dict().values() for run in runs]
    same = [torch.equal(a, b) for a, b in zip(values[0], values[1], strict=True)]
    other = [torch.equal(a, b) for a, b in zip(values[0], values[2], strict=True)]
    assert all(same) and not any(other)
    assert runs[0][1][-1].train_loss == runs[1][1][-1].train_loss


def test_checkpoint_folder_of_another_run_is_refused_and_settings_must_match(digits, tmp_path):
    data = (digits[0].tensors[0][:128], digits[0].tensors[1][:128])
    train(mlp(), data, epochs=1, eval_size=8, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"holds checkpoints of another run \(advtrain-.*\.pt\); a new run will not"):
        train(mlp(), data, epochs=1, eval_size=8, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"other settings \(epochs=1, now 2"):
        train(mlp(), data, epochs=2, eval_size=8, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="no advtrain checkpoint"):
        train(mlp(), data, epochs=1, checkpoint_dir=tmp_path / "empty", resume=True)


# ---- the attack argument ------------------------------------------------------------------------

class SpyPGD(PGD):
    """PGD that records the eps of each call."""

    seen: ClassVar[list[float]] = []

    def run(self, x, y=None, target=None, **kwargs):
        SpyPGD.seen.append(kwargs["eps"])
        return super().run(x, y, target, **kwargs)


def test_attack_factory_is_rebuilt_per_batch_and_runs_at_the_warm_up_eps(digits):
    data = (digits[0].tensors[0][:256], digits[0].tensors[1][:256])  # 4 batches of 64
    built = []

    def factory(model):
        built.append(model)
        return SpyPGD(model, eps=1.0, steps=2)

    SpyPGD.seen = []
    model, _ = train(mlp(), data, attack=factory, epochs=2, warmup=0.5)
    assert len(built) == 1 + 8 and all(m is model for m in built)  # a check, then one per batch
    assert SpyPGD.seen == pytest.approx([EPS * min(1.0, (i + 1) / 4) for i in range(8)])


@pytest.mark.parametrize("kind", ["name", "object", "torchattacks"])
def test_attack_given_by_name_or_object_crafts_every_batch_at_the_training_eps(digits, torchattacks, monkeypatch, kind):
    data = (digits[0].tensors[0][:256], digits[0].tensors[1][:256])  # 4 batches of 64
    seen: ClassVar[list[float]] = []

    class SpyTA(torchattacks.PGD):
        def forward(self, images, labels):
            seen.append(self.eps)
            return super().forward(images, labels)

    SpyPGD.seen = seen
    model = mlp()
    if kind == "name":
        monkeypatch.setitem(advkit.attacks.ATTACKS, "pgd", SpyPGD)
        attack = "pgd"
    else:
        attack = SpyPGD(model, 1.0, steps=2) if kind == "object" else SpyTA(model, eps=1.0, steps=2)
    train(model, data, attack=attack, epochs=2, warmup=0.5)
    assert seen == pytest.approx([EPS * min(1.0, (i + 1) / 4) for i in range(8)])


# ---- argument errors ----------------------------------------------------------------------------

BAD = [
    ({"method": "madry"}, ValueError, "method must be one of 'pgd', 'trades', 'fgsm-rs'"),
    ({"eps": -0.1}, ValueError, "eps must be finite and >= 0"),
    ({"eps": 0}, ValueError, "eps must be > 0"),
    ({"norm": "l3"}, ValueError, "norm must be one of 'linf', 'l2', 'l1'"),
    ({"epochs": 0}, ValueError, "epochs must be a finite integer >= 1"),
    ({"epochs": 2.5}, TypeError, "epochs must be an integer"),
    ({"lr": 0.0}, ValueError, "lr must be a finite number > 0"),
    ({"batch_size": 0}, ValueError, "batch_size must be a finite integer >= 1"),
    ({"beta": 6.0}, TypeError, "method 'pgd' has no option beta"),
    ({"method": "trades", "beta": -1.0}, ValueError, "beta must be a finite number >= 0"),
    ({"method": "fgsm-rs", "guard_drop": 2.0}, ValueError, "guard_drop must be a finite number > 0 and <= 1"),
    ({"warmup": 1.0}, ValueError, "warmup must be a finite number >= 0 and < 1"),
    ({"steps": 0}, ValueError, "steps must be a finite integer >= 1"),
    ({"resume": True}, ValueError, "resume=True needs the checkpoint_dir"),
    ({"attack": "deepfool"}, ValueError, "attack must be one of"),
    ({"attack": 3}, TypeError, "attack must be None, an attack name"),
    ({"attack": lambda m: "pgd"}, TypeError, "the attack factory's result must be an advkit or torchattacks attack"),
    ({"attack": PGD(nn.Linear(64, 10), 0.2)}, ValueError, "attack attacks another model"),
    ({"eval_data": [1, 2, 3]}, TypeError, "eval_data: data must be a Dataset"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD, ids=[str(sorted(k)) + m[:20] for k, _, m in BAD])
def test_bad_arguments_fail_before_any_work(digits, kwargs, error, message):
    model = mlp()
    before = weights(model)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(model, digits[0], **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_data_fails_before_any_work(digits):
    x, y = digits[0].tensors
    with pytest.raises(ValueError, match="data images contains NaN"):
        train(mlp(), (torch.full_like(x[:64], float("nan")), y[:64]))
    with pytest.raises(ValueError, match=r"data images must lie in \[0, 1\]"):
        train(mlp(), (x[:64] * 255, y[:64]))
    with pytest.raises(ValueError, match=r"^data labels \(the model returns 10 logits\) must lie in \[0, 10\); saw 10"):
        train(mlp(), (x[:64], y[:64] + 10))
    with pytest.raises(ValueError, match=r"eval_data: data labels \(the model returns 10 logits\) must lie in"):
        train(mlp(), (x[:64], y[:64]), eval_data=(x[:64], y[:64] + 10))
    model = mlp()
    with pytest.raises(ValueError, match="under norm='l2' but training is under norm='linf'"):
        train(model, (x[:64], y[:64]), attack=PGD(model, 0.2, norm="l2"))


def test_fgsm_starting_from_the_previous_visit_carries_each_samples_perturbation():
    """With a negligible step, a sample's second visit returns exactly where its first ended (cut to the new ball),
    while its first visit starts at a random point of the eps-ball; other samples keep their own memory."""
    model = mlp()
    x = torch.rand(6, 1, 8, 8)
    y = torch.zeros(6, dtype=torch.long)
    adversary = FastAdversary(model, "linf", step=1e-6, noise=0.0, start="previous", size=10)
    first = adversary(x[:3], y[:3], 0.3, seeds=torch.tensor([1, 2, 3]), index=torch.tensor([0, 4, 9]))
    assert 0.2 < float((first - x[:3]).abs().amax()) <= 0.3 + 1e-6
    again = adversary(x[:3], y[:3], 0.1, seeds=torch.tensor([4, 5, 6]), index=torch.tensor([0, 4, 9]))
    assert torch.allclose(again, (x[:3] + (first - x[:3]).clamp(-0.1, 0.1)).clamp(0, 1), atol=1e-6)
    other = adversary(x[:3], y[:3], 0.3, seeds=torch.tensor([1, 2, 3]), index=torch.tensor([1, 2, 3]))
    assert not torch.equal(adversary.memory[1:4], torch.zeros(3, 1, 8, 8)) and torch.allclose(other, first, atol=1e-6)

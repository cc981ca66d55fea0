"""MART's loss, AWP and the average of the weights (issue 22, items 3 and 4): MART's loss is its formula on
hand-computed logits, AWP's perturbation is undone exactly (the weights end as the optimizer's step from
where they were), the average follows its recurrence, is what a run of every defense returns and
resumes bit-exactly.

Every run trains a small MLP on a few of the 8x8 digits for one or two steps: a fraction of a CPU second.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advkit
from advkit.core import OptimizerStep, Player, trainable_params
from advkit.defenses import adversarial_training, augmented_training, finetune, gaussian_training
from advkit.defenses.adversaries import LayerScaledStep, WeightAdversary
from advkit.defenses.ema import WeightAverage, ema_decay
from advkit.defenses.losses import kl_divergence, mart_loss


@pytest.fixture(scope="module")
def digits():
    x, y = advkit.data.load("digits")[0].tensors
    return x[:128], y[:128]


def mlp(seed: int = 0, norm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), *([nn.BatchNorm1d(16)] if norm else []), nn.ReLU(),
                         nn.Linear(16, 10))


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def train(model: nn.Module, data, **kwargs):
    settings = {"eps": 0.2, "epochs": 1, "lr": 1e-2, "batch_size": 64, "progress": False, "eval_size": 8,
                "device": "cpu", "steps": 2, "warmup": 0.0, **kwargs}
    return adversarial_training(model, data, **settings)


# ---- MART's loss --------------------------------------------------------------------------------

def test_mart_loss_matches_its_formula_on_a_hand_computed_case():
    # sample 1, label 0: p(x_adv) = (1/6, 2/6, 3/6), p(x) = (3/5, 1/5, 1/5)
    # sample 2, label 2: p(x_adv) = (1/3, 1/3, 1/3), p(x) = (1/4, 1/4, 1/2)
    adv = torch.tensor([[0.0, math.log(2), math.log(3)], [0.0, 0.0, 0.0]])
    clean = torch.tensor([[math.log(3), 0.0, 0.0], [0.0, 0.0, math.log(2)]])
    y = torch.tensor([0, 2])
    # boosted CE: -log p_y(x_adv) - log(1 - the largest other p(x_adv)): ln 6 + ln 2, ln 3 + ln 1.5
    bce = [math.log(12), math.log(4.5)]
    kl = [0.6 * math.log(0.6 * 6) + 0.2 * math.log(0.2 * 3) + 0.2 * math.log(0.2 * 2),
          0.25 * math.log(0.75) * 2 + 0.5 * math.log(1.5)]
    weights = [1 - 3 / 5, 1 - 1 / 2]  # 1 - p_y(x)
    assert kl_divergence(clean, adv).tolist() == pytest.approx(kl, abs=1e-6)
    expected = sum(bce) / 2 + 6.0 * (kl[0] * weights[0] + kl[1] * weights[1]) / 2
    assert float(mart_loss(clean, adv, y, beta=6.0)) == pytest.approx(expected, abs=1e-6)
    assert float(mart_loss(clean, adv, y, beta=0.0)) == pytest.approx(sum(bce) / 2, abs=1e-6)
    # MART's own code (its 1.0001 and 1e-12 guard the logarithms): the same up to those guards
    p_adv, p_clean = F.softmax(adv, 1), F.softmax(clean, 1)
    rival = torch.where(p_adv.argsort(1)[:, -1] == y, p_adv.argsort(1)[:, -2], p_adv.argsort(1)[:, -1])
    reference = (F.cross_entropy(adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), rival) + 6.0 * (
        F.kl_div(torch.log(p_adv + 1e-12), p_clean, reduction="none").sum(1)
        * (1.0000001 - p_clean.gather(1, y[:, None]).squeeze(1))).mean())
    assert float(mart_loss(clean, adv, y, beta=6.0)) == pytest.approx(float(reference), abs=1e-3)


def test_mart_loss_stays_finite_where_a_wrong_class_takes_all_the_probability():
    adv = torch.tensor([[0.0, 200.0, 0.0]], requires_grad=True)  # p_1(x_adv) rounds to 1: log(1 - p_1) by logsumexp
    clean = torch.zeros(1, 3, requires_grad=True)
    loss = mart_loss(clean, adv, torch.tensor([0]), beta=6.0)
    loss.backward()
    # -log p_0 = 200, -log(1 - p_1) = 200 - ln 2; KL((1/3, 1/3, 1/3) || (0, 1, 0)) = 400/3 - ln 3, weighed 2/3
    assert float(loss.detach()) == pytest.approx(400 - math.log(2) + 6.0 * (2 / 3) * (400 / 3 - math.log(3)), rel=1e-5)
    assert torch.isfinite(adv.grad).all() and torch.isfinite(clean.grad).all()


# ---- AWP ----------------------------------------------------------------------------------------

def test_the_weight_perturbation_ascends_layer_by_layer_and_is_undone_exactly():
    model = mlp(norm=True).train()
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    before = state(model)
    weights = WeightAdversary(model, Player(trainable_params(model), LayerScaledStep(0.01), maximize=True))
    loss = lambda: F.cross_entropy(model(x), y)  # noqa: E731
    with torch.no_grad():
        at_w = float(loss())
    model.load_state_dict(before)  # that forward in train mode moved BatchNorm's statistics
    weights.perturb(loss)
    after = state(model)
    for name, w in before.items():
        if w.ndim > 1:  # linear weights: moved by 1% of their norm
            assert float((after[name] - w).norm()) == pytest.approx(0.01 * float(w.norm()), rel=1e-4)
        else:  # biases, BatchNorm's weights and statistics: as they were
            assert torch.equal(after[name], w), name
    with torch.no_grad():
        assert float(loss()) > at_w  # up the loss
    weights.restore()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items() if v.ndim > 1)
    model.load_state_dict(after)
    weights.restore()  # nothing perturbed: nothing to do
    assert all(torch.equal(model.state_dict()[k], v) for k, v in after.items())


def captured_steps(monkeypatch) -> list[dict]:
    """What each optimizer step of a run received: the weights before it, the gradients, the learning rate."""
    steps, step = [], OptimizerStep.__call__

    def recording(self, params, grads, ascend):
        steps.append({"weights": [p.detach().clone() for p in params], "grads": [g.clone() for g in grads],
                      "lr": self.optimizer.param_groups[0]["lr"]})
        step(self, params, grads, ascend)

    monkeypatch.setattr(OptimizerStep, "__call__", recording)
    return steps


@pytest.mark.parametrize("method", ["pgd", "trades", "mart"])
def test_awp_leaves_the_weights_as_they_were_plus_the_optimizers_step(digits, monkeypatch, method):
    data = (digits[0][:64], digits[1][:64])  # one step
    steps = captured_steps(monkeypatch)
    plain, _ = train(mlp(), data, method=method)
    perturbed, _ = train(mlp(), data, method=method, awp=0.01)
    assert len(steps) == 2
    assert all(torch.equal(a, b) for a, b in zip(steps[0]["weights"], steps[1]["weights"], strict=True))
    assert not torch.equal(steps[0]["grads"][0], steps[1]["grads"][0])  # taken at the perturbed weights
    manual = mlp()  # one AdamW step from the initial weights with those gradients
    optimizer = torch.optim.AdamW(manual.parameters(), lr=steps[1]["lr"], weight_decay=5e-4)
    for p, g in zip(manual.parameters(), steps[1]["grads"], strict=True):
        p.grad = g
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(manual.state_dict().values(), perturbed.state_dict().values(),
                                                  strict=True))
    assert not torch.equal(plain[1].weight, perturbed[1].weight)


def test_awp_waits_for_the_eps_to_warm_up(digits, monkeypatch):
    steps = captured_steps(monkeypatch)
    train(mlp(), digits, awp=0.01, warmup=0.75)  # 2 steps, the eps full from the second
    train(mlp(), digits, warmup=0.75)
    assert torch.equal(steps[0]["grads"][0], steps[2]["grads"][0])  # the first step: no perturbation
    assert not torch.equal(steps[1]["grads"][0], steps[3]["grads"][0])


# ---- the average of the weights -----------------------------------------------------------------

def test_the_average_follows_its_recurrence_and_copies_the_buffers():
    model = mlp(norm=True)
    average = WeightAverage(model, decay=0.5)
    expected = [p.detach().double().clone() for p in model.parameters()]
    for t in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[2].running_mean.add_(1.0)
        average.update(model, t)
        d = min(0.5, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * p.detach().double() for e, p in zip(expected, model.parameters(), strict=True)]
    assert [ema_decay(0.5, t) for t in range(4)] == [0.1, 2 / 11, 0.25, 4 / 13]
    assert all(torch.allclose(a.double(), e, atol=1e-6) for a, e in zip(average.model.parameters(), expected,
                                                                        strict=True))
    assert torch.equal(average.model[2].running_mean, model[2].running_mean)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_a_run_with_an_average_ends_with_it_and_records_both(digits, tmp_path):
    model, history = train(mlp(), digits, epochs=2, ema=0.9, checkpoint_dir=tmp_path)
    saved = torch.load(sorted(tmp_path.glob("advtrain-*.pt"))[-1], weights_only=True)
    assert all(torch.equal(v, saved["ema"][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, saved["model"][k]) for k, v in model.state_dict().items())
    assert all(r.raw_clean_accuracy is not None and r.raw_robust_accuracy is not None for r in history)
    _, plain = train(mlp(), digits, epochs=2)
    assert all(r.raw_clean_accuracy is None for r in plain) and "raw_clean_accuracy" not in plain.table()[0]


#: The defenses other than adversarial_training, each on the MLP at small settings, with ``**kwargs``.
OTHER_DEFENSES = {
    "finetune": lambda model, data, **kw: finetune(model, data, eps=0.2, epochs=2, lr=1e-2, batch_size=64,
                                                   device="cpu", progress=False, **kw),
    "augment": lambda model, data, **kw: augmented_training(model, data, corruptions=["gaussian-noise"], epochs=2,
                                                            batch_size=64, augmix=False, device="cpu",
                                                            progress=False, **kw),
    "gaussian": lambda model, data, **kw: gaussian_training(model, data, sigma=0.25, epochs=2, batch_size=64,
                                                            device="cpu", progress=False, **kw),
}


@pytest.mark.parametrize("defense", list(OTHER_DEFENSES))
def test_every_other_defense_ends_with_the_average_of_the_weights_it_trained(digits, monkeypatch, defense):
    """The average follows the recurrence over the weights after every step (from the initial ones), the
    training itself is the same as without it, and the last epoch's accuracy is the average's."""
    run, update, seen = OTHER_DEFENSES[defense], WeightAverage.update, []

    def recording(self, model, t):
        seen.append([p.detach().clone().double() for p in model.parameters()])
        update(self, model, t)

    plain, _ = run(mlp(), digits)
    monkeypatch.setattr(WeightAverage, "update", recording)
    averaged, history = run(mlp(), digits, ema=0.9, eval_data=digits)
    expected = [p.detach().double() for p in mlp().parameters()]
    for t, weights in enumerate(seen):
        d = ema_decay(0.9, t)
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights, strict=True)]
    assert len(seen) == 2 * (len(digits[0]) // 64)
    assert all(torch.allclose(a.double(), e, atol=1e-6) for a, e in zip(averaged.parameters(), expected, strict=True))
    assert all(torch.equal(a.double(), w) for a, w in zip(plain.parameters(), seen[-1], strict=True))
    assert history[-1].clean_accuracy == advkit.train.accuracy(averaged, digits)
    assert not all(torch.equal(a, b) for a, b in zip(plain.parameters(), averaged.parameters(), strict=True))


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("options", [{"method": "pgd", "awp": 0.01, "ema": 0.9}, {"method": "mart", "ema": 0.5}],
                         ids=["pgd-awp-ema", "mart-ema"])
def test_an_interrupted_run_with_awp_and_an_average_resumes_bit_exactly(digits, tmp_path, monkeypatch, options):
    reference, ref_history = train(mlp(), digits, epochs=3, checkpoint_dir=tmp_path / "a", **options)
    calls, update = [0], WeightAverage.update

    def crashing(self, model, t):
        calls[0] += 1
        if calls[0] == 4:  # the second step of the second epoch, AWP's perturbation in place
            raise Interrupt
        update(self, model, t)

    monkeypatch.setattr(WeightAverage, "update", crashing)
    with pytest.raises(Interrupt):
        train(mlp(), digits, epochs=3, checkpoint_dir=tmp_path / "b", **options)
    monkeypatch.setattr(WeightAverage, "update", update)
    resumed, history = train(mlp(seed=7), digits, epochs=3, checkpoint_dir=tmp_path / "b", resume=True, **options)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(),
                                                  strict=True))
    assert [{**vars(r), "seconds": 0} for r in history] == [{**vars(r), "seconds": 0} for r in ref_history]


def test_an_interrupted_finetune_with_an_average_resumes_bit_exactly(digits, tmp_path, monkeypatch):
    run = OTHER_DEFENSES["finetune"]
    reference, ref_history = run(mlp(), digits, ema=0.9, checkpoint_dir=tmp_path / "a")
    calls, update = [0], WeightAverage.update

    def crashing(self, model, t):
        calls[0] += 1
        if calls[0] == 4:  # the second step of the second epoch
            raise Interrupt
        update(self, model, t)

    monkeypatch.setattr(WeightAverage, "update", crashing)
    with pytest.raises(Interrupt):
        run(mlp(), digits, ema=0.9, checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(WeightAverage, "update", update)
    resumed, history = run(mlp(seed=7), digits, ema=0.9, checkpoint_dir=tmp_path / "b", resume=True)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(),
                                                  strict=True))
    records = [[{**vars(r), "seconds": 0, "train_loss": repr(r.train_loss)} for r in h] for h in (history, ref_history)]
    assert records[0] == records[1] and len(records[0]) == 3  # epoch 0 (no loss: NaN) and two epochs
    assert history.config["options"]["ema"] == 0.9


# ---- options ------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, error, message", [
    ({"ema": 1.0}, ValueError, "ema must be a finite number >= 0 and < 1"),
    ({"ema": -0.1}, ValueError, "ema must be a finite number >= 0 and < 1"),
    ({"awp": -0.01}, ValueError, "awp must be a finite number >= 0 and <= 1"),
    ({"awp": "5e-3"}, TypeError, "awp must be a number, got str"),
    ({"method": "fgsm-rs", "awp": 0.01}, TypeError, "method 'fgsm-rs' has no option awp"),
    ({"method": "mart", "beta": -1.0}, ValueError, "beta must be a finite number >= 0"),
    ({"method": "mart", "loss": "dlr"}, TypeError, "method 'mart' has no option loss"),
])
def test_bad_options_fail_before_any_work(digits, options, error, message):
    model = mlp()
    before = state(model)
    with pytest.raises(error, match=message):
        train(model, digits, **options)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

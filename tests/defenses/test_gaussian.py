"""Training for randomized smoothing: the batch trained on carries noise at sigma, unclipped; the run is
seeded; SmoothAdv's attack stays in the L2 ball and [0, 1], raises the smoothed loss and leaves the model
as it was; its eps warms up; bad settings fail before any training."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import advkit
from advkit.defenses import GaussianOptions, History, gaussian_training, smoothadv_attack, smoothed_loss


def digits(n: int = 128):
    x, y = advkit.data.load("digits")[0].tensors
    return x[:n], y[:n]


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class Spy(nn.Module):
    """A model that keeps the batches it is trained on (train-mode forwards)."""

    def __init__(self):
        super().__init__()
        self.net, self.seen = mlp(), []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.net(x)


def test_every_image_is_trained_on_with_unclipped_noise_at_sigma():
    x, y = torch.full((256, 1, 8, 8), 0.5), torch.arange(256) % 10
    for sigma in (0.25, 1.0):
        spy = Spy()
        gaussian_training(spy, (x, y), sigma=sigma, epochs=1, batch_size=64, shift=0, progress=False, device="cpu")
        noise = torch.stack(spy.seen) - 0.5  # 4 batches of 64 images of 64 pixels: 16,384 draws
        assert len(spy.seen) == 4 and (noise != 0).all()
        # the mean's sd is sigma/128, the sd's about sigma/181: 5 and 7 of them
        assert abs(float(noise.mean())) < 5 * sigma / 128 and abs(float(noise.std()) / sigma - 1) < 0.04
        assert float(noise.min()) < -0.5 and float(noise.max()) > 0.5  # beyond [0, 1]: not clipped


def test_fit_passes_the_labels_to_an_augment_that_takes_them():
    data, seen = digits(), []

    class Labelled:
        takes_labels = True

        def __call__(self, x, generator, y):
            seen.append(y)
            return x

    advkit.train.fit(mlp(), data, epochs=1, batch_size=32, seed=0, device="cpu", progress=False, augment=Labelled())
    assert torch.equal(torch.cat(seen).sort().values, data[1].sort().values)  # every label of the epoch, once


def test_the_same_seed_the_same_model_and_smoothadv_warms_up():
    data, held_out = digits(), digits(200)
    runs = {}
    for key, seed, eps in (("a", 0, 0.0), ("b", 0, 0.0), ("c", 1, 0.0), ("d", 0, 0.5), ("e", 0, 0.5)):
        model, history = gaussian_training(mlp(), data, epochs=2, batch_size=32, seed=seed, progress=False,
                                           device="cpu", eval_data=held_out, smoothadv_eps=eps, smoothadv_warmup=1.0)
        assert not model.training and isinstance(history, History)
        runs[key] = weights(model), history
    assert torch.equal(runs["a"][0], runs["b"][0]) and not torch.equal(runs["a"][0], runs["c"][0])
    assert torch.equal(runs["d"][0], runs["e"][0]) and not torch.equal(runs["a"][0], runs["d"][0])
    plain, adversarial = runs["a"][1], runs["d"][1]
    assert (plain.method, plain.eps, adversarial.method, adversarial.eps) == ("gaussian", None, "smoothadv", 0.5)
    assert set(plain.table()[0]) == {"epoch", "train_loss", "clean_accuracy", "seconds"}
    assert [r.eps for r in adversarial] == [0.25, 0.5]  # 8 steps, eps ramped over all of them
    assert plain.evaluated_on == "eval_data" and plain[-1].clean_accuracy == advkit.train.accuracy(
        gaussian_training(mlp(), data, epochs=2, batch_size=32, progress=False, device="cpu")[0], held_out)
    assert plain.config == {"sigma": 0.25, "epochs": 2, "seed": 0, "lr": 3e-3, "batch_size": 32, "shift": 2,
                            "weight_decay": 5e-4, "smoothadv_eps": 0.0, "smoothadv_steps": 2,
                            "smoothadv_samples": 2, "smoothadv_warmup": 1.0, "ema": 0.0}


def test_smoothadv_stays_in_the_ball_raises_the_smoothed_loss_and_leaves_the_model_alone():
    x, y = digits(64)
    model = mlp()
    model.train()
    model[1].weight.grad = torch.ones_like(model[1].weight)
    model[3].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    noise = 0.25 * torch.randn((4, *x.shape), generator=torch.Generator().manual_seed(0))
    for eps, steps in ((0.5, 1), (1.0, 5)):
        x_adv = smoothadv_attack(model, x, y, noise, eps, steps)
        assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps * (1 + 1e-5)
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1 and not x_adv.requires_grad
        with torch.no_grad():
            gain = smoothed_loss(model, x_adv, y, noise) - smoothed_loss(model, x, y, noise)
        assert float(gain.min()) > 0  # every sample's loss rises
        assert torch.equal(x_adv, smoothadv_attack(model, x, y, noise, eps, steps))  # no randomness of its own
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(model[1].weight.grad, torch.ones_like(model[1].weight)) and model[1].bias.grad is None
    assert not model[3].bias.requires_grad and model[3].weight.requires_grad
    assert torch.equal(smoothadv_attack(model, x, y, noise, 0, 3), x)


def test_the_smoothed_loss_is_minus_log_the_mean_softmax():
    x, y = digits(8)
    model, noise = mlp(), torch.randn((3, *x.shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        probs = torch.stack([model(x + n).softmax(1) for n in noise]).mean(0)
        expected = -probs[torch.arange(8), y].log()
        assert torch.allclose(smoothed_loss(model, x, y, noise), expected, atol=1e-5)
        one = nn.functional.cross_entropy(model(x + noise[0]), y, reduction="none")
        assert torch.allclose(smoothed_loss(model, x, y, noise[:1]), one, atol=1e-5)  # one draw: the cross-entropy


class Untouchable(nn.Module):
    def forward(self, x):
        raise AssertionError("the model ran")


@pytest.mark.parametrize(("bad", "error", "message"), [
    ({"sigma": 0}, ValueError, "sigma must be a finite number > 0, got 0"),
    ({"sigma": -0.5}, ValueError, "sigma must be a finite number > 0, got -0.5"),
    ({"sigma": "0.25"}, TypeError, "sigma must be a number, got str '0.25'"),
    ({"smoothadv_eps": -0.1}, ValueError, "smoothadv_eps must be a finite number >= 0, got -0.1"),
    ({"smoothadv_eps": math.inf}, ValueError, "smoothadv_eps must be a finite number >= 0, got inf"),
    ({"smoothadv_steps": 0}, ValueError, "smoothadv_steps must be a finite integer >= 1, got 0"),
    ({"smoothadv_samples": 0}, ValueError, "smoothadv_samples must be a finite integer >= 1, got 0"),
    ({"smoothadv_warmup": 1.5}, ValueError, "smoothadv_warmup must be a finite number >= 0 and <= 1, got 1.5"),
    ({"epochs": 0}, ValueError, "epochs must be a finite integer >= 1, got 0"),
])
def test_bad_options_fail_before_training(bad, error, message):
    with pytest.raises(error, match=message):
        gaussian_training(Untouchable(), digits(), progress=False, **bad)
    with pytest.raises(error, match=message):
        GaussianOptions(**bad)


def test_bad_attack_settings_fail_before_any_forward():
    x, y = digits(4)
    shape = r"noise must have shape \(m, \*x.shape\) = \(m, 4, 1, 8, 8\), got \(4, 1, 8, 8\)"
    with pytest.raises(ValueError, match=shape):
        smoothadv_attack(Untouchable(), x, y, torch.zeros_like(x), 0.5, 2)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0, got -1"):
        smoothadv_attack(Untouchable(), x, y, torch.zeros((1, *x.shape)), -1, 2)
    with pytest.raises(ValueError, match="steps must be a finite integer >= 1, got 0"):
        smoothadv_attack(Untouchable(), x, y, torch.zeros((1, *x.shape)), 0.5, 0)

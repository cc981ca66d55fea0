"""The EMA of the generator (its ramped decay, its value after known updates) and one short D
training run per loss that moves the discriminator the right way."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from advkit.gan import GAN_LOSSES, GANTrainer, MLPDiscriminator, MLPGenerator
from advkit.gan.ema import ema_decay_at


def test_ema_decay_ramps_with_the_steps_done():
    # window 1 / (1 - decay) = ramp * (step + 1): a tenth of the run so far, capped by ema_decay
    assert ema_decay_at(0, 0.999, 0.1) == 0.0 and ema_decay_at(9, 0.999, 0.1) == 0.0  # the first steps copy G
    assert ema_decay_at(19, 0.999, 0.1) == pytest.approx(0.5)
    assert ema_decay_at(399, 0.999, 0.1) == pytest.approx(0.975)
    assert ema_decay_at(10**6, 0.999, 0.1) == 0.999


class Constant(nn.Module):
    """A generator whose one parameter and one float buffer the test sets by hand."""

    latent_dim = 1

    def __init__(self):
        super().__init__()
        self.value = nn.Parameter(torch.zeros(1))
        self.register_buffer("stat", torch.zeros(1))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, z):
        return self.value.expand(len(z), 1)


def test_ema_value_after_known_updates():
    trainer = GANTrainer(Constant(), MLPDiscriminator(dim=1), ema_decay=0.6, ema_ramp=0.5, device="cpu")
    for step in range(6):  # G holds the value `step` after step `step`
        with torch.no_grad():
            trainer.G.value.fill_(step)
            trainer.G.stat.fill_(10 * step)
            trainer.G.count.fill_(step)
        trainer.ema.update(trainer.G, step)
    # decays 1 - 2/(t+1) clipped to [0, 0.6]: 0, 0, 1/3, 1/2, 0.6, 0.6
    # EMA: 0, 1, 1/3*1 + 2/3*2 = 5/3, (5/3 + 3)/2 = 7/3, 0.6*7/3 + 0.4*4 = 3, 0.6*3 + 0.4*5 = 3.8
    assert float(trainer.ema.model.value) == pytest.approx(3.8)
    assert float(trainer.ema.model.stat) == pytest.approx(38.0)  # float buffers (BatchNorm statistics) are averaged too
    assert int(trainer.ema.model.count) == 5  # counters are copied
    assert float(trainer.G.value.detach()) == 5.0


def test_ema_of_a_fit_tracks_the_generator_within_its_window():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(512, 2) + 3, torch.zeros(512))
    trainer = GANTrainer(MLPGenerator(latent_dim=2, hidden=16, depth=1), MLPDiscriminator(hidden=16, depth=1),
                         device="cpu")
    trainer.fit(data, steps=5, batch_size=64, progress=False)
    # five steps of a 0.1 ramp: every decay is 0, so the EMA equals the live generator exactly
    assert all(torch.equal(a, b) for a, b in zip(trainer.ema.model.parameters(), trainer.G.parameters(), strict=True))


class Shifted(nn.Module):
    """A fixed generator (no parameters): N(3, 1) in one dimension."""

    latent_dim = 1

    def forward(self, z):
        return z + 3.0


@pytest.mark.parametrize("loss", sorted(GAN_LOSSES))
def test_discriminator_training_separates_real_from_fake(loss):
    """Real N(0, 1) against a fixed N(3, 1): from D = 0 every loss must make D(real) - D(fake) grow,
    and (for the losses with targets) move D(real) up and D(fake) down."""
    real = torch.randn(4096, 1, generator=torch.Generator().manual_seed(1))
    D = nn.Linear(1, 1)
    nn.init.zeros_(D.weight)
    nn.init.zeros_(D.bias)
    trainer = GANTrainer(Shifted(), D, loss=loss, lr_d=1e-2, betas=(0.5, 0.999), ema_decay=None, device="cpu")
    trainer.fit(TensorDataset(real, torch.zeros(len(real))), steps=20, batch_size=256, progress=False)
    with torch.no_grad():
        d_real, d_fake = float(D(real).mean()), float(D(real + 3.0).mean())
    if loss == "wgan":  # weight clipping holds |w| <= clip, so the gap 3|w| is at most 0.03
        assert abs(float(D.weight.detach())) <= trainer.options.clip + 1e-7 and d_real - d_fake > 0.02
    else:
        assert d_real - d_fake > 0.05
    if loss == "lsgan":
        assert 0 < d_real <= 1.0 and d_fake < 0.5  # pulled towards the targets 1 and 0


class Scale(nn.Module):
    """G(z) = a z: two noises differ by |a| times as much in the sample."""

    latent_dim = 4

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, z, y=None):
        return self.a * z


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_mode_seeking_term_is_weight_over_the_sample_to_noise_ratio(a):
    real = torch.zeros(8, 4)
    losses = []
    for weight in (0.0, 0.3):
        torch.manual_seed(0)  # the same discriminator both times
        trainer = GANTrainer(Scale(a), MLPDiscriminator(dim=4), mode_seeking=weight, device="cpu", seed=0)
        loss, _ = trainer.g_loss(real, None)
        losses.append(float(loss.detach()))
    assert losses[1] - losses[0] == pytest.approx(0.3 / (a + 1e-5), rel=1e-5)


def test_mode_seeking_pairs_share_their_labels():
    seen = []

    class Recorder(nn.Module):
        latent_dim, num_classes = 2, 10

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, z, y):
            seen.append(y.clone())
            return self.w * z

    D = MLPDiscriminator(dim=2)
    trainer = GANTrainer(Recorder(), D, conditional="class", mode_seeking=1.0, device="cpu")
    trainer.g_loss(torch.zeros(7, 2), torch.arange(7))
    assert seen[-1].tolist() == [0, 1, 2, 0, 1, 2, 6]
    with pytest.raises(ValueError, match="^mode_seeking pairs samples of one condition; it is not available with "
                                         "conditional='image'$"):
        GANTrainer(Recorder(), D, conditional="image", mode_seeking=1.0)

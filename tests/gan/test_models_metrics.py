"""Model shapes (unconditional, class- and image-conditional, 28x28x1 and 32x32x3) and the offline metrics."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from advkit.gan import Discriminator, GANTrainer, Generator, Translator, dcgan, metrics
from advkit.gan.tasks import mode_statistics, paired, ring_modes


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("classes", [None, 10])
def test_dcgan_shapes(channels, size, classes):
    G, D = dcgan(channels, size, classes, latent_dim=16, width=8)
    y = torch.arange(5) % 10 if classes else None
    args = (y,) if classes else ()
    with torch.no_grad():
        x = G(torch.randn(5, 16), *args)
    assert x.shape == (5, channels, size, size) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert D(x, *args).shape == (5,)


def test_conditional_models_require_their_condition():
    G, D = dcgan(num_classes=10, latent_dim=8, width=8)
    with pytest.raises(ValueError, match="^this generator is class-conditional: pass labels y$"):
        G(torch.randn(2, 8))
    with pytest.raises(ValueError, match="^this discriminator is class-conditional: pass labels$"):
        D(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="^size must be a multiple of 4 and at least 8 .*; got 30$"):
        Generator(size=30)


def test_pix2pix_models_and_trainer_shapes(mnist5k):
    pairs = paired(mnist5k[0], "edges")
    cond, target = pairs.tensors
    assert cond.shape == target.shape == (4000, 1, 28, 28) and float(cond.max()) <= 1
    G = Translator(1, 1, latent_dim=4, width=8)
    D = Discriminator(1, 28, cond_channels=1, width=8)
    trainer = GANTrainer(G, D, conditional="image", l1_weight=100.0, device="cpu")
    history = trainer.fit((cond[:64], target[:64]), steps=2, batch_size=16, progress=False)
    assert len(history["l1"]) == 2
    assert trainer.sample(condition=cond[:3]).shape == (3, 1, 28, 28)
    colour = Translator(1, 3, latent_dim=4, width=8)(torch.randn(2, 4), torch.rand(2, 1, 32, 32))
    assert colour.shape == (2, 3, 32, 32)
    assert Discriminator(3, 32, cond_channels=1, width=8)(colour, torch.rand(2, 1, 32, 32)).shape == (2,)


def test_class_conditional_sampling_and_validation(mnist5k):
    G, D = dcgan(num_classes=10, latent_dim=8, width=8)
    trainer = GANTrainer(G, D, conditional="class", device="cpu")
    x, y = mnist5k[0].tensors
    trainer.fit((x[:64], y[:64]), steps=1, batch_size=32, progress=False)
    assert trainer.sample(12).shape == (12, 1, 28, 28)
    assert torch.equal(trainer.sample(4, seed=5), trainer.sample(4, seed=5))
    with pytest.raises(ValueError, match="integer labels"):
        trainer.fit((x[:64], y[:64].float()), steps=1, progress=False)
    with pytest.raises(ValueError, match="loss must be one of"):
        GANTrainer(G, D, loss="vanilla")
    with pytest.raises(TypeError, match=r"^generator must have an integer attribute latent_dim \(the noise size\)$"):
        GANTrainer(nn.Linear(2, 2), D)


def test_frechet_distance_identical_sets_is_zero():
    feats = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
    assert metrics.frechet_distance(feats, feats.clone()) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form():
    a = torch.randn(400, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    # a shifted copy has the same covariance: the distance is |shift|^2 exactly
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(float(shift.pow(2).sum()), rel=1e-9)
    # b = 2a + shift: S_b = 4 S_a, tr(S_a + S_b - 2 (S_a S_b)^(1/2)) = tr(S_a)
    b = 2 * a + shift
    expected = float((b.mean(0) - a.mean(0)).pow(2).sum() + torch.cov(a.T).trace())
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_two_gaussian_samples_is_near_the_population_value():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 2, generator=gen, dtype=torch.float64)
    b = torch.randn(20000, 2, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 3.0], dtype=torch.float64) + 1
    # N(0, I) vs N(1, diag(1, 9)): 2 + (1 + 9 - 2*3) = 6
    assert metrics.frechet_distance(a, b) == pytest.approx(6.0, abs=0.15)


class ByFirstPixel(nn.Module):
    """A toy classifier: class = round(9 * first pixel); features = the pixels."""

    def forward(self, x):
        return 50 * -(x.flatten(1)[:, :1] - torch.arange(10) / 9).abs()

    def features(self, x):
        return x.flatten(1)


def test_class_statistics_and_conditional_accuracy():
    labels = torch.arange(100) % 10
    samples = (labels.float() / 9).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    stats = metrics.class_statistics(ByFirstPixel(), samples)
    assert stats["classes_covered"] == 10 and stats["label_entropy"] == pytest.approx(stats["max_entropy"])
    assert metrics.conditional_accuracy(ByFirstPixel(), samples, labels) == 1.0
    collapsed = metrics.class_statistics(ByFirstPixel(), torch.zeros(100, 1, 2, 2))
    assert collapsed["classes_covered"] == 1 and collapsed["label_entropy"] == pytest.approx(0.0)
    assert metrics.classifier_fid(ByFirstPixel(), samples, samples) == pytest.approx(0.0, abs=1e-8)


def test_mode_statistics_on_exact_modes():
    stats = mode_statistics(ring_modes().repeat(10, 1))
    assert stats == {"modes_covered": 8, "modes": 8, "high_quality": 1.0}
    assert mode_statistics(torch.zeros(50, 2))["modes_covered"] == 0

"""Odd but legal GAN inputs: data that does not fit the models gets a clear ValueError before training."""
from __future__ import annotations

import pytest
import torch

from advkit.gan import GANTrainer, MLPDiscriminator, MLPGenerator, dcgan
from advkit.gan.models import Discriminator, Generator, Translator


def conditional_trainer(**model_options) -> GANTrainer:
    torch.manual_seed(0)
    G, D = dcgan(**{"num_classes": 10, "width": 4, "latent_dim": 8, **model_options})
    return GANTrainer(G, D, conditional="class", device="cpu")


def fit_on(trainer: GANTrainer, x, y):
    return trainer.fit((x, y), steps=2, batch_size=8, progress=False)


LABELS = torch.arange(16) % 10


@pytest.mark.parametrize("shape,expected", [((16, 1, 32, 32), r"\(1, 28, 28\).*\(1, 32, 32\)"),
                                            ((16, 3, 28, 28), r"\(1, 28, 28\).*\(3, 28, 28\)")])
def test_data_of_another_shape_than_the_generator_makes(shape, expected):
    trainer = conditional_trainer()
    with pytest.raises(ValueError, match=f"generator makes samples of shape {expected}"):
        fit_on(trainer, torch.rand(shape), LABELS)
    assert trainer.step == 0 and not trainer.history["g_loss"]


def test_data_outside_the_generators_range():
    trainer = conditional_trainer()
    with pytest.raises(ValueError, match=r"lie in \[-1, .*produces values in \[0.0, 1.0\].*rescale"):
        fit_on(trainer, torch.rand(16, 1, 28, 28) * 2 - 1, LABELS)


def test_labels_beyond_the_models_classes():
    trainer = conditional_trainer(num_classes=5)
    with pytest.raises(ValueError, match="label 9 but the models know 5 classes .*num_classes=10"):
        fit_on(trainer, torch.rand(16, 1, 28, 28), LABELS)


def test_discriminator_that_cannot_judge_the_data():
    G = MLPGenerator(latent_dim=2, dim=3)
    trainer = GANTrainer(G, MLPDiscriminator(dim=2), device="cpu")
    with pytest.raises(ValueError, match=r"discriminator fails on the data's samples \(shape \(3,\)\)"):
        trainer.fit((torch.randn(16, 3), torch.zeros(16)), steps=1, batch_size=8, progress=False)


def test_unbounded_generators_accept_any_range():
    trainer = GANTrainer(MLPGenerator(latent_dim=2), MLPDiscriminator(), device="cpu")
    trainer.fit((100 * torch.randn(16, 2), torch.zeros(16)), steps=1, batch_size=8, progress=False)
    assert trainer.step == 1


def test_integer_images_are_refused_with_their_dtype():
    trainer = conditional_trainer()
    with pytest.raises(TypeError, match="floating point.*torch.uint8"):
        fit_on(trainer, torch.randint(0, 255, (16, 1, 28, 28), dtype=torch.uint8), LABELS)


@pytest.mark.parametrize("build,name", [
    (lambda: dcgan(width=0), "width"), (lambda: dcgan(latent_dim=0), "latent_dim"),
    (lambda: dcgan(channels=0), "channels"), (lambda: Generator(num_classes=0), "num_classes"),
    (lambda: Discriminator(width=-2), "width"),
    (lambda: Translator(latent_dim=0), "latent_dim"), (lambda: MLPGenerator(latent_dim=0), "latent_dim"),
    (lambda: MLPDiscriminator(hidden=0), "hidden"),
])
def test_layer_sizes_must_be_positive(build, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        build()


def test_generator_latent_dim_zero_is_refused_by_the_trainer():
    G, D = MLPGenerator(latent_dim=2), MLPDiscriminator()
    G.latent_dim = 0
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        GANTrainer(G, D)

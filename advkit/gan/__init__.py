"""GANs on the shared min-max core: losses, DCGAN models, the trainer, offline metrics, paired tasks.

The discriminator is the inner (max) player, the generator the outer (min) player; see
:class:`GANTrainer`.
"""
from . import losses, metrics, models
from .losses import GAN_LOSSES, gan_loss
from .models import Discriminator, Generator, MLPDiscriminator, MLPGenerator, Translator, dcgan
from .options import GANOptions
from .trainer import GANTrainer

__all__ = [
           "GAN_LOSSES",
           "Discriminator",
           "GANOptions",
           "GANTrainer",
           "Generator",
           "MLPDiscriminator",
           "MLPGenerator",
           "Translator",
           "dcgan",
           "gan_loss",
           "losses",
           "metrics",
           "models",
]

"""GANs on the shared min-max core: losses, DCGAN models, the trainer, offline metrics, paired tasks.

The discriminator is the inner (max) player, the generator the outer (min) player; see
:class:`GANTrainer`. ``demo_section`` gives ``advkit demo`` its short GAN part.
"""
from . import losses, metrics, models
from .demo import demo_section
from .losses import LOSSES, gan_loss
from .models import Discriminator, Generator, MLPDiscriminator, MLPGenerator, Translator, dcgan
from .options import GANOptions
from .trainer import GANTrainer

__all__ = [
           "LOSSES",
           "Discriminator",
           "GANOptions",
           "GANTrainer",
           "Generator",
           "MLPDiscriminator",
           "MLPGenerator",
           "Translator",
           "dcgan",
           "demo_section",
           "gan_loss",
           "losses",
           "metrics",
           "models",
]

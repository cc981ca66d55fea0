"""GANs on the shared min-max core: losses, DCGAN models, the trainer, offline metrics, paired tasks.

The discriminator is the inner (max) player, the generator the outer (min) player; see
:class:`GANTrainer`. ``demo_section`` gives ``advkit demo`` its short GAN part.
"""
from . import losses, metrics, models
from .losses import LOSSES, get_loss
from .models import Discriminator, Generator, MLPDiscriminator, MLPGenerator, Translator, dcgan
from .demo import demo_section
from .trainer import GANTrainer

__all__ = ["GANTrainer", "demo_section", "LOSSES", "get_loss", "losses", "metrics", "models", "Generator", "Discriminator",
           "Translator", "MLPGenerator", "MLPDiscriminator", "dcgan"]

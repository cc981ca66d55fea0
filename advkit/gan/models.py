"""DCGAN-style generators and discriminators for 28x28x1 and 32x32x3 images, plus small MLPs for
2-D toy data.

The contract (see docs/ARCHITECTURE.md): a generator has an integer ``latent_dim`` and maps noise of shape
``(N, latent_dim)``, plus labels or a condition image when conditional, to samples in [0, 1]; a
discriminator maps samples, plus the same condition, to one logit per sample, shape (N,).

Class conditioning: the generator concatenates a label embedding to the noise; the discriminator
is a projection discriminator (Miyato & Koyama 2018): ``logit = w·h + <embed(y), h>``. Image
conditioning (pix2pix): the discriminator sees the condition and the image stacked on channels;
the generator is a small U-Net that also takes noise, broadcast over its bottleneck.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def _check_size(size: int) -> int:
    """The side of the lowest feature map: images must be square with a side divisible by 4."""
    if size < 8 or size % 4:
        raise ValueError(f"size must be a multiple of 4 and at least 8 (28 and 32 are the usual ones); got {size}")
    return size // 4


def _check_sizes(**sizes: int | None) -> None:
    """ValueError naming the first layer size that is not a positive integer (None is allowed: absent)."""
    for name, value in sizes.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer; got {value!r}")


class Generator(nn.Module):
    """DCGAN generator: linear to a (2w, s/4, s/4) map, two stride-2 transposed convs with BatchNorm,
    a sigmoid so samples land in [0, 1] (``output_range``). With ``num_classes``, ``forward(z, y)`` takes labels.

    Args:
        latent_dim: the noise size.
        channels: the images' channels.
        size: the images' side (a multiple of 4, at least 8).
        num_classes: the number of classes of a class-conditional generator (None: unconditional).
        width: the channels of the last hidden feature map (the first has twice as many).
    """

    output_range = (0.0, 1.0)

    def __init__(self, latent_dim: int = 64, channels: int = 1, size: int = 28, num_classes: int | None = None,
                 width: int = 64):
        super().__init__()
        _check_sizes(latent_dim=latent_dim, channels=channels, num_classes=num_classes, width=width)
        self.latent_dim, self.num_classes, self.base = latent_dim, num_classes, _check_size(size)
        embed_dim = 0 if num_classes is None else min(latent_dim, 32)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.project = nn.Sequential(
            nn.Linear(latent_dim + embed_dim, 2 * width * self.base ** 2, bias=False),
            nn.Unflatten(1, (2 * width, self.base, self.base)), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Sigmoid(),
        )

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            if y is None:
                raise ValueError("this generator is class-conditional: pass labels y")
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.up(self.project(z))


def _sn(module: nn.Module, on: bool) -> nn.Module:
    return spectral_norm(module) if on else module


class Discriminator(nn.Module):
    """DCGAN discriminator without BatchNorm (so WGAN-GP's per-sample gradients stay per-sample),
    spectral norm on every layer by default, LeakyReLU(0.2).

    ``num_classes`` makes it a projection discriminator, ``forward(x, y)``; ``cond_channels`` makes
    it a pix2pix pair discriminator, ``forward(x, c)`` with the condition image ``c`` resized to x.

    Args:
        channels: the images' channels.
        size: the images' side (a multiple of 4, at least 8).
        num_classes: the number of classes of a projection discriminator (None: unconditional).
        cond_channels: the channels of a pair discriminator's condition image (0: none).
        width: the channels of the first feature map (the last has twice as many).
        spectral: spectral norm on every layer.
    """

    def __init__(self, channels: int = 1, size: int = 28, num_classes: int | None = None, cond_channels: int = 0,
                 width: int = 64, spectral: bool = True):
        super().__init__()
        if num_classes and cond_channels:
            raise ValueError("a discriminator is conditioned on classes or on an image, not both")
        _check_sizes(channels=channels, num_classes=num_classes, width=width)
        if cond_channels < 0:
            raise ValueError(f"cond_channels must be >= 0; got {cond_channels}")
        base = _check_size(size)
        self.num_classes, self.cond_channels = num_classes, cond_channels
        self.body = nn.Sequential(
            _sn(nn.Conv2d(channels + cond_channels, width, 3, 1, 1), spectral), nn.LeakyReLU(0.2),
            _sn(nn.Conv2d(width, width, 4, 2, 1), spectral), nn.LeakyReLU(0.2),
            _sn(nn.Conv2d(width, 2 * width, 4, 2, 1), spectral), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        features = 2 * width * base ** 2
        self.head = _sn(nn.Linear(features, 1), spectral)
        self.embed = _sn(nn.Embedding(num_classes, features), spectral) if num_classes else None

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.cond_channels:
            if cond is None:
                raise ValueError("this discriminator judges (condition, image) pairs: pass the condition image")
            x = torch.cat([x, F.interpolate(cond, size=x.shape[-2:], mode="nearest")
                           if cond.shape[-2:] != x.shape[-2:] else cond], 1)
        h = self.body(x)
        logit = self.head(h)[:, 0]
        if self.embed is not None:
            if cond is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            logit = logit + (self.embed(cond) * h).sum(1)
        return logit


class Translator(nn.Module):
    """pix2pix-style U-Net generator: condition image (N, in_channels, s, s) plus noise (N, latent_dim)
    to an image (N, out_channels, s, s) in [0, 1]. Two stride-2 encoder convs, the noise broadcast
    over the bottleneck, two decoder transposed convs with a skip connection.

    Args:
        in_channels: the condition images' channels.
        out_channels: the output images' channels.
        latent_dim: the noise size.
        width: the channels of the first encoder feature map.
    """

    output_range = (0.0, 1.0)

    def __init__(self, in_channels: int = 1, out_channels: int = 1, latent_dim: int = 8, width: int = 32):
        super().__init__()
        _check_sizes(in_channels=in_channels, out_channels=out_channels, latent_dim=latent_dim, width=width)
        self.latent_dim = latent_dim
        self.enc1 = nn.Sequential(nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2))
        self.enc2 = nn.Sequential(nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2))
        self.dec2 = nn.Sequential(nn.ConvTranspose2d(2 * width + latent_dim, width, 4, 2, 1), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.dec1 = nn.Sequential(nn.ConvTranspose2d(2 * width, out_channels, 4, 2, 1), nn.Sigmoid())

    def forward(self, z: Tensor, cond: Tensor) -> Tensor:
        _check_size(cond.shape[-1])
        e1 = self.enc1(cond)
        e2 = self.enc2(e1)
        noise = z.view(*z.shape, 1, 1).expand(-1, -1, *e2.shape[-2:])
        return self.dec1(torch.cat([self.dec2(torch.cat([e2, noise], 1)), e1], 1))


class MLPGenerator(nn.Module):
    """Noise to points in R^dim through a ReLU MLP: the generator for 2-D toy distributions.

    Args:
        latent_dim: the noise size.
        dim: the points' dimension.
        hidden: the hidden layers' width.
        depth: the number of hidden layers.
    """

    def __init__(self, latent_dim: int = 2, dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        _check_sizes(latent_dim=latent_dim, dim=dim, hidden=hidden, depth=depth)
        self.latent_dim = latent_dim
        self.net = _mlp(latent_dim, dim, hidden, depth, nn.ReLU)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """Points in R^dim to one logit each through a LeakyReLU MLP.

    Args:
        dim: the points' dimension.
        hidden: the hidden layers' width.
        depth: the number of hidden layers.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        _check_sizes(dim=dim, hidden=hidden, depth=depth)
        self.net = _mlp(dim, 1, hidden, depth, lambda: nn.LeakyReLU(0.2))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.net(x)[:, 0]


def _mlp(d_in: int, d_out: int, hidden: int, depth: int, act) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), act()]
    return nn.Sequential(*layers, nn.Linear(hidden, d_out))


def dcgan(channels: int = 1, size: int = 28, num_classes: int | None = None, latent_dim: int = 64,
          width: int = 64) -> tuple[Generator, Discriminator]:
    """A matching (generator, discriminator) pair for ``channels`` x ``size`` x ``size`` images.

    Args:
        channels: the images' channels.
        size: the images' side (a multiple of 4, at least 8).
        num_classes: the number of classes of a class-conditional pair (None: unconditional).
        latent_dim: the generator's noise size.
        width: both networks' width (see :class:`Generator` and :class:`Discriminator`).
    """
    return (Generator(latent_dim, channels, size, num_classes, width),
            Discriminator(channels, size, num_classes, width=width))


__all__ = ["Discriminator", "Generator", "MLPDiscriminator", "MLPGenerator", "Translator", "dcgan"]

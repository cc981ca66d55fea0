"""AdvGAN's default networks (after Xiao et al. 2018): a small conv encoder-decoder that maps an image
(plus, when targeted, its target class) to a raw perturbation of the image's shape, and a small conv
discriminator that tells real images from perturbed ones. Both work on any (C, H, W) image, are
per-sample (instance norm, no batch statistics) and cheap: the generator costs about one forward
of a SmallCNN."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1), nn.InstanceNorm2d(channels, affine=True), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1), nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class PerturbationNet(nn.Module):
    """Image ``(N, C, H, W)`` (and, with ``num_classes``, one-hot targets ``(N, num_classes)`` stacked
    on as constant planes) to an unbounded tensor of the image's shape: a conv, two stride-2 convs
    down to H/4, ``blocks`` residual blocks, two stride-2 transposed convs back, a conv to C channels.
    AdvGAN squashes the output into the eps-ball."""

    def __init__(self, channels: int = 1, num_classes: int | None = None, width: int = 8, blocks: int = 2):
        super().__init__()
        _check_positive(channels=channels, width=width, blocks=blocks)
        if num_classes is not None:
            _check_positive(num_classes=num_classes)
        self.num_classes = num_classes
        w = width

        def block(conv: nn.Module, c: int) -> list[nn.Module]:
            return [conv, nn.InstanceNorm2d(c, affine=True), nn.ReLU()]

        self.net = nn.Sequential(
            *block(nn.Conv2d(channels + (num_classes or 0), w, 3, 1, 1), w),
            *block(nn.Conv2d(w, 2 * w, 3, 2, 1), 2 * w),
            *block(nn.Conv2d(2 * w, 4 * w, 3, 2, 1), 4 * w),
            *[_Residual(4 * w) for _ in range(blocks)],
            *block(nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, output_padding=1), 2 * w),
            *block(nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1), w),
            nn.Conv2d(w, channels, 3, 1, 1),
        )

    def forward(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        h = x
        if self.num_classes is not None:
            if target is None:
                raise ValueError("this perturbation network is targeted: pass one-hot targets")
            h = torch.cat([x, target[:, :, None, None].to(x.dtype).expand(-1, -1, *x.shape[-2:])], 1)
        out = self.net(h)
        return out if out.shape[-2:] == x.shape[-2:] else F.interpolate(out, size=x.shape[-2:], mode="bilinear")


class Critic(nn.Module):
    """Images ``(N, C, H, W)`` to one logit each: two stride-2 convs with LeakyReLU(0.2), a third
    conv, global average pooling, a linear layer."""

    def __init__(self, channels: int = 1, width: int = 8):
        super().__init__()
        _check_positive(channels=channels, width=width)
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.InstanceNorm2d(2 * w, affine=True), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, 1, 1), nn.InstanceNorm2d(4 * w, affine=True), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)[:, 0]

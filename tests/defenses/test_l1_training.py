"""Adversarial training under the L1 threat model: every input the model sees, the training attacks' and
the per-epoch check's included, lies in the L1 ball of eps around a training image (and in [0, 1])."""
from __future__ import annotations

import torch
from torch import nn

from advkit.defenses import adversarial_training


def test_adversarial_training_at_l1_keeps_every_attack_in_the_l1_ball():
    eps = 2.0  # an L1 budget: above 1, where L-inf's ball would cover the whole box
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    seen = []
    model.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0].detach().clone()))
    _, history = adversarial_training(model, (x, y), "pgd", eps=eps, norm="l1", epochs=1, batch_size=16, steps=3,
                                      eval_size=16, warmup=0.0, progress=False, device="cpu")
    assert history.config["norm"] == "l1"
    inputs = torch.cat(seen).flatten(1)
    l1, nearest = torch.cdist(inputs.double(), x.flatten(1).double(), p=1).min(1)
    assert inputs.min() >= 0 and inputs.max() <= 1
    assert l1.max() <= eps * (1 + 1e-5), float(l1.max())
    assert l1.max() > eps / 2  # the attacks moved the images: this is no clean training
    moved = (inputs - x.flatten(1)[nearest])[l1 > 0.01]
    assert (moved.abs() > 1e-6).sum(1).max() <= 32  # L1's sparse steps (measured: at most 16 of the 64 pixels)

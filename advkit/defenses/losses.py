"""Training objectives of the adversarial-training methods (what the network, the outer player, descends)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def kl_divergence(clean_logits: Tensor, adv_logits: Tensor) -> Tensor:
    """Per-sample ``KL(p(x) || p(x_adv)) = sum_c p_c(x) (log p_c(x) - log p_c(x_adv))``, p the softmax,
    shape (N,). Gradients flow into both arguments (detach one to hold it fixed)."""
    log_p = F.log_softmax(clean_logits, dim=1)
    return (log_p.exp() * (log_p - F.log_softmax(adv_logits, dim=1))).sum(1)


def trades_loss(clean_logits: Tensor, adv_logits: Tensor, labels: Tensor, beta: float) -> Tensor:
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(p(x) || p(x_adv))``, both terms averaged
    over the batch. The first term buys accuracy, the second smoothness inside the ball."""
    return F.cross_entropy(clean_logits, labels) + beta * kl_divergence(clean_logits, adv_logits).mean()


def adversarial_ce(adv_logits: Tensor, labels: Tensor) -> Tensor:
    """Madry et al.'s objective: the cross-entropy of the adversarial examples, averaged over the batch."""
    return F.cross_entropy(adv_logits, labels)


__all__ = ["adversarial_ce", "kl_divergence", "trades_loss"]

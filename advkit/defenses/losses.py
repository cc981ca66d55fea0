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


def mart_loss(clean_logits: Tensor, adv_logits: Tensor, labels: Tensor, beta: float) -> Tensor:
    """MART (Wang et al. 2020): the boosted cross-entropy of the adversarial examples,
    ``-log p_y(x_adv) - log(1 - max_{k != y} p_k(x_adv))``, plus ``beta`` times
    ``KL(p(x) || p(x_adv)) * (1 - p_y(x))``, both averaged over the batch: the KL term weighs most the
    samples the network misclassifies. ``log(1 - p_k)`` is taken as the log-sum-exp of the other
    logits minus that of all (exact where ``p_k`` rounds to 1). Gradients flow into both logits."""
    log_adv = F.log_softmax(adv_logits, dim=1)
    true = F.one_hot(labels, adv_logits.shape[1]).bool()
    rival = adv_logits.masked_fill(true, float("-inf")).argmax(1, keepdim=True)  # the likeliest wrong class
    others = adv_logits.scatter(1, rival, float("-inf")).logsumexp(1) - adv_logits.logsumexp(1)
    boosted = F.nll_loss(log_adv, labels) - others.mean()
    p_true = F.softmax(clean_logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return boosted + beta * (kl_divergence(clean_logits, adv_logits) * (1 - p_true)).mean()


def adversarial_ce(adv_logits: Tensor, labels: Tensor) -> Tensor:
    """Madry et al.'s objective: the cross-entropy of the adversarial examples, averaged over the batch."""
    return F.cross_entropy(adv_logits, labels)


__all__ = ["adversarial_ce", "kl_divergence", "mart_loss", "trades_loss"]

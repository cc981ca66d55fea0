"""Transfer attacks: adversarial examples crafted on a surrogate model, judged on the target (the
black-box setting without queries, Papernot et al. 2017)."""
from __future__ import annotations

import torch
from torch import nn

from .base import Attack, AttackRun
from .capabilities import capability


class Transfer(Attack):
    """``attack``, built on a surrogate model, crafts the examples; the target ``model`` only judges them.

    Per call the target runs two forward passes per sample and no backward: the clean one (labels and
    samples it already gets wrong) and the one that judges the surrogate's examples. The result's
    ``forwards`` and ``backwards`` count the target's passes; the surrogate's are not queries of the target.
    Its norm is ``attack``'s; ``eps`` (default: ``attack``'s) is passed to every call of ``attack``.
    It declares ``uses_gradients = False`` (it follows no gradient of the target) and ``transfer = True``
    (it searches on the surrogate, not on the target's outputs), so ``evaluate``'s checks never take its
    curve for their gradient-free attack: they run their Square search as without it, and a target whose
    gradients are masked still gets ``evaluate``'s Square curve. Targets given at the call (``target=``)
    are passed on to ``attack``; the report and ``repr`` name the surrogate.

    Args:
        model: the target classifier (logits for inputs in [0, 1]); borrowed, never changed.
        attack: an attack bound to the surrogate model (any :class:`~advkit.attacks.Attack`, e.g.
            ``PGD(surrogate, eps=0.3, steps=40)``; a wrapped torchattacks attack too).
        eps: the budget (None: ``attack``'s).
        surrogate: the surrogate's name in reports and ``repr`` (None: its class name).
        **kwargs: the settings every attack takes (``loss``, ``early_stop``, ``seed``, ``amp``): see
            :class:`~advkit.attacks.base.Attack`; the norm is ``attack``'s and targets come only from ``target=``.
    """

    uses_gradients = False
    transfer = True
    settings = ("surrogate", "attack")

    def __init__(self, model: nn.Module, attack: Attack, eps: float | None = None, surrogate: str | None = None,
                 **kwargs):
        if not hasattr(attack, "run") or not isinstance(getattr(attack, "model", None), nn.Module):
            raise TypeError("attack must be an attack object bound to the surrogate model, "
                            f"got {type(attack).__name__}")
        if attack.model is model:
            raise ValueError("attack is bound to the target model itself; a transfer attack crafts its examples on "
                             "another model (the surrogate): attack the target directly instead")
        for name in ("norm", "targeted"):
            if name in kwargs:
                raise TypeError(f"Transfer takes no {name}=: the norm is the surrogate attack's, and targets are "
                                "given at the call with target=")
        super().__init__(model, attack.eps if eps is None else eps, norm=attack.norm, **kwargs)
        if surrogate is not None and not isinstance(surrogate, str):
            raise TypeError(f"surrogate must be a name (str) or None, got {type(surrogate).__name__}")
        self.attack = attack
        self.surrogate = surrogate or type(attack.model).__name__
        self.targets = ("given",) if "given" in capability(attack, "targets") else ()
        # per sample and warm-started exactly when the surrogate's attack is
        self.per_sample = bool(capability(attack, "per_sample"))
        self.warm_starts = bool(capability(attack, "warm_starts"))

    def perturb(self, run: AttackRun) -> None:
        run.forward_clean()
        idx = run.active()
        rows = slice(None) if idx is None else idx
        if idx is not None and len(idx) == 0:
            return
        call = {"eps": run.eps, "seed": self._seed(run, rows), "check_success": False}
        if run.x_init is not None:
            call["x_init"] = run.x_init[rows]
        if run.targeted:
            call["target"] = run.labels[rows]
        x_adv = self.attack.run(run.x[rows], run.true_labels[rows], **call).x_adv.to(run.x.dtype).detach()
        with torch.no_grad():
            logits = run.logits(x_adv)
            run.observe(idx, x_adv, logits, run.loss_fn(logits, run.labels[rows], run.targeted))

    def _seed(self, run: AttackRun, rows) -> int | torch.Tensor:
        """The surrogate attack's seed: the call's per-sample seeds of ``rows``, or an int drawn from
        the call's generator (so ``run(seed=...)`` reaches it)."""
        if run.sample_seeds is not None:
            return run.sample_seeds[rows]
        g = run.generator
        return int(torch.randint(0, 2 ** 31 - 1, (), generator=g, device=g.device))


__all__ = ["Transfer"]

"""AutoAttack (Croce & Hein, ICML 2020), standard version: APGD-CE, APGD-T, FAB-T and Square, each
run on the samples the previous ones did not fool, with the paper's budgets; all four are ours.

:func:`standard` (with the budgets :data:`STEPS`, :data:`QUERIES`, :data:`TARGETS`, :data:`RESTARTS`,
and under L1 :data:`L1_RESTARTS`, :data:`L1_TARGETS`) is the one place for the components and their
budgets; :func:`rand` for the rand version's (APGD-CE and APGD-DLR with :data:`RAND_EOT` forwards per
gradient, for randomized models; each component's result judged on one fresh forward, as the official
code judges it). Under L1 the official standard version (``pyautoattack`` 0.2.0, ``_set_version``)
runs APGD-CE with 5 restarts and APGD-T with 5 target classes, both with the larger-eps schedule
(``large_eps``), then FAB-T and Square (5,000 queries, its L1 algorithm); advkit's L1 ensemble is the
same. Under every norm Square's size schedule is not stretched to its budget (``rescale=False``, as the
official ``resc_schedule=False``). The official code
(``pip install 'advkit[autoattack]'``, import name ``pyautoattack``) is the reference that
``tests/attacks/test_autoattack_official.py`` and ``benchmarks/autoattack.py`` compare against.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core import NORMS
from .apgd import APGD, APGDT
from .base import Attack, AttackRun
from .fab import FAB
from .square import Square

log = logging.getLogger(__name__)

AUTOATTACK = "autoattack"
#: The name ``evaluate`` accepts for the rand version.
AUTOATTACK_RAND = "autoattack-rand"
VERSIONS = ("standard", "rand")
#: The standard version's budgets: iterations of APGD-CE, APGD-T and FAB-T, Square's queries,
#: target classes of APGD-T and FAB-T, restarts. Read when an AutoAttack is built.
STEPS, QUERIES, TARGETS, RESTARTS = 100, 5000, 9, 1
#: Under L1: APGD-CE's restarts and APGD-T's target classes (both with the larger-eps schedule).
L1_RESTARTS, L1_TARGETS = 5, 5


def standard(norm: str = "linf") -> list[tuple[str, type[Attack], dict[str, Any]]]:
    """The standard version's components under ``norm`` in order: (name, class, settings besides eps and
    norm). Square runs last under every norm, its size schedule not stretched to its budget (the
    official ``resc_schedule=False``)."""
    square_ = ("square", Square, {"n_queries": QUERIES, "p_init": 0.8, "rescale": False})
    fab_t = ("fab-t", FAB, {"steps": STEPS, "n_target_classes": TARGETS, "alpha_max": 0.1, "eta": 1.05, "beta": 0.9})
    if norm == "l1":
        return [
            ("apgd-ce", APGD, {"steps": STEPS, "restarts": L1_RESTARTS, "loss": "ce", "large_eps": True}),
            ("apgd-t", APGDT, {"steps": STEPS, "restarts": RESTARTS, "n_target_classes": L1_TARGETS,
                               "large_eps": True}),
            fab_t, square_,
        ]
    return [
        ("apgd-ce", APGD, {"steps": STEPS, "restarts": RESTARTS, "loss": "ce", "rho": 0.75}),
        ("apgd-t", APGDT, {"steps": STEPS, "restarts": RESTARTS, "n_target_classes": TARGETS, "rho": 0.75}),
        fab_t, square_,
    ]

#: The rand version's forwards per gradient (the official ``eot_iter`` of ``version="rand"``).
RAND_EOT = 20


def rand() -> list[tuple[str, type[Attack], dict[str, Any]]]:
    """The rand version's components in order, for randomized models: APGD-CE and APGD-DLR, each
    gradient averaged over :data:`RAND_EOT` forwards (the official ``version="rand"``)."""
    return [
        ("apgd-ce", APGD, {"steps": STEPS, "restarts": RESTARTS, "loss": "ce", "rho": 0.75, "eot": RAND_EOT}),
        ("apgd-dlr", APGD, {"steps": STEPS, "restarts": RESTARTS, "loss": "dlr", "rho": 0.75, "eot": RAND_EOT}),
    ]


def version_components(version: str, norm: str = "linf") -> list[tuple[str, type[Attack], dict[str, Any]]]:
    """The components of AutoAttack's ``version`` ("standard" or "rand") under ``norm``."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(map(repr, VERSIONS))}, got {version!r}")
    return standard(norm) if version == "standard" else rand()


@dataclass
class Component:
    """One member of the ensemble: its name in the paper, the attack, and its settings."""

    name: str
    attack: Attack
    settings: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.settings.items()) + ")"


def component(name: str, model: nn.Module, eps: float, norm: str, seed: int = 0, amp: bool = False,
              version: str = "standard", **overrides: Any) -> Component:
    """The ``version``'s component ``name`` for ``model``, with ``overrides`` of its settings."""
    table = {n: (cls, settings) for n, cls, settings in version_components(version, norm)}
    if name not in table:
        raise ValueError(f"AutoAttack has no component {name!r}; its components: {', '.join(table)}")
    cls, settings = table[name]
    settings = {**settings, **overrides}
    return Component(name, cls(model, eps, norm=norm, seed=seed, amp=amp, **settings), settings)


class AutoAttack(Attack):
    """The AutoAttack ensemble (``version`` "standard" or "rand") as one attack: each component attacks
    only the samples no earlier one fooled, and a sample counts as fooled if any component fooled it inside the ball.

    Untargeted (APGD-T and FAB-T pick their own targets). ``seed`` seeds every component, as in the
    official code; per-sample seeds given to :meth:`run` go to the components row by row. A warm
    start (``run(x_init=...)``) goes to APGD-CE, the first component. A sample no component fooled
    is returned at APGD-CE's result (its highest-loss point). ``norm``: "linf", "l2" or "l1" (the L1
    version's budgets, see :func:`standard`). ``progress``:
    the components' progress bars (Square's, shown once a call has run for a few seconds).
    """

    # capabilities follow the members: the norms whose members all support them, uses_gradients and
    # needs_training if any member's (under any norm), per_sample if every member's
    norms = tuple(n for n in NORMS if all(n in cls.norms for _, cls, _ in standard(n)))
    uses_gradients = any(cls.uses_gradients for n in NORMS for _, cls, _ in standard(n))
    per_sample = all(cls.per_sample for n in NORMS for _, cls, _ in standard(n))
    needs_training = any(cls.needs_training for n in NORMS for _, cls, _ in standard(n))
    warm_starts = True
    losses = ("ce",)
    targets = ()  # untargeted: APGD-T and FAB-T choose their own targets

    def __init__(self, model: nn.Module, eps: float = 8 / 255, norm: str = "linf", version: str = "standard", *,
                 seed: int = 0, amp: bool = False, progress: bool = True):
        """The standard ensemble (APGD-CE, APGD-T, FAB-T, Square) or the rand one (APGD-CE, APGD-DLR with EOT).

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed, never changed.
            eps: the budget every component runs at.
            norm: ``"linf"``, ``"l2"`` or ``"l1"``.
            version: ``"standard"`` (the components of :func:`standard`) or ``"rand"`` (those of
                :func:`rand`, for a model whose forward is random).
            seed: seeds every component, as in the official code.
            amp: run the components' forwards under bf16 autocast on CUDA.
            progress: the components' progress bars.
        """
        super().__init__(model, eps, norm=norm, seed=seed, amp=amp)
        parts = version_components(version, self.norm)
        self.version = version
        self.components = [component(name, model, self.eps, self.norm, self.seed, self.amp, version)
                           for name, _, _ in parts]
        self.progress = bool(progress)

    def _unsupported_target(self, what: str) -> str:
        return (f"{what}: AutoAttack is untargeted (APGD-T and FAB-T pick their own targets); "
                "use advkit.attacks.APGDT or FAB for a targeted attack")

    def perturb(self, run: AttackRun) -> None:
        run.forward_clean()
        x_init, run.x_init = run.x_init, None
        seed = run.generator.initial_seed()  # the call's seed, given to every component as the official code does
        tried = torch.zeros(len(run.x), dtype=torch.bool, device=run.x.device)
        for part in self.components:
            idx = (~run.success).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            if hasattr(part.attack, "progress"):  # the ensemble's setting, also on a copy sharing the components
                part.attack.progress = self.progress
            warm = {"x_init": x_init[idx]} if x_init is not None and part.attack.warm_starts else {}
            x_init = None
            res = run.delegate(part.attack, idx, seed=seed if run.sample_seeds is None else run.sample_seeds[idx],
                               **warm)
            keep = res.success | ~tried[idx]  # successes, and the first component's point for the others
            run.best[idx[keep]] = res.x_adv[keep]
            run.success[idx] |= res.success
            tried[idx] = True
            log.info("autoattack %s: %d of %d samples still standing", part.name, int((~run.success).sum()), len(run.x))

    def describe(self) -> list[dict[str, str]]:
        """Each component and its settings, in the order they run (for reports)."""
        return [{"name": c.name, "attack": str(c)} for c in self.components]

    def __repr__(self) -> str:
        parts = ", ".join(map(str, self.components))
        return f"AutoAttack(version={self.version!r}, eps={self.eps}, norm={self.norm!r}, seed={self.seed}: {parts})"


def build_autoattack(model: nn.Module, norm: str, num_classes: int, version: str = "standard") -> AutoAttack:
    """The ``version`` of AutoAttack for ``model`` under ``norm`` (what ``evaluate`` builds for "autoattack",
    and with ``version="rand"`` for "autoattack-rand")."""
    if num_classes < 2:
        raise ValueError("AutoAttack needs at least 2 classes")
    return AutoAttack(model, norm=norm, version=version)


def square(model: nn.Module, norm: str, queries: int = QUERIES) -> Component:
    """AutoAttack's Square component with ``queries`` queries (the gradient-free check's attack), its
    schedule stretched to that budget (``rescale``) whatever the norm's table says."""
    return component("square", model, 8 / 255, norm, n_queries=queries, rescale=True)


__all__ = ["AUTOATTACK", "AUTOATTACK_RAND", "AutoAttack", "Component", "build_autoattack", "component", "rand",
           "square", "standard", "version_components"]

"""The defenses by name: every adversarial-training method of :data:`~advkit.defenses.methods.TRAINING_METHODS`,
adversarial fine-tuning, augmentation with common corruptions and Gaussian augmentation for randomized smoothing.

:data:`DEFENSES` is what ``advkit defend --method`` offers: its choices, its help and its checks read it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .methods import TRAINING_METHODS


@dataclass(frozen=True)
class Defense:
    """One defense: ``about`` (a few words for help texts), whether it trains against an eps
    (``adversarial``: eps 0 would be plain training) and whether it writes checkpoints it can resume."""

    name: str
    about: str
    adversarial: bool = True
    checkpointed: bool = True


#: What the adversarial-training methods are, for help texts (a method without an entry is "adversarial training").
_ABOUT = {"pgd": "Madry et al.'s adversarial training",
          "fgsm-rs": "fast adversarial training with its overfitting guard",
          "trades": "Zhang et al.",
          "mart": "Wang et al.'s misclassification-aware training"}

DEFENSES: dict[str, Defense] = {
    **{name: Defense(name, _ABOUT.get(name, "adversarial training")) for name in TRAINING_METHODS},
    "finetune": Defense("finetune", "a short adversarial fine-tuning"),
    "augment": Defense("augment", "training on common corruptions; the report adds accuracy under corruptions",
                       adversarial=False, checkpointed=False),
    "gaussian": Defense("gaussian", "Gaussian noise augmentation at --sigma for randomized smoothing (Cohen et al.), "
                        "with --smoothadv-eps SmoothAdv (Salman et al.)", adversarial=False, checkpointed=False),
}


def defenses_text() -> str:
    """The defenses as ``name (about), ...``, for help texts."""
    return ", ".join(f"{d.name} ({d.about})" for d in DEFENSES.values())


__all__ = ["DEFENSES", "Defense", "defenses_text"]

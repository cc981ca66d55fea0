"""Adversarial attacks: each one short file on the shared core; the base class owns the guarantees.

``ATTACKS`` maps the names that ``advkit.evaluate`` and the CLI accept to attack classes.
``AdvGAN`` (a generator trained with ``advkit.gan``) is loaded only when asked for, so importing
this package loads nothing of ``advkit.gan`` (docs/ARCHITECTURE.md, Layout).
"""
from .adapter import from_torchattacks
from .apgd import APGD, APGDT
from .autoattack import AutoAttack
from .base import Attack, AttackResult, AttackRun, TargetMode
from .bpda import BPDA
from .contract import AttackLike
from .cw import CW
from .errors import GradientMaskingError
from .fab import FAB
from .fgsm import FGSM
from .generate import generate, generate_batches
from .hopskipjump import HopSkipJump
from .losses import ATTACK_LOSSES, sample_loss, succeeded
from .mifgsm import MIFGSM
from .pgd import PGD
from .square import Square
from .transfer import Transfer

ATTACKS: dict[str, type[Attack]] = {"fgsm": FGSM, "pgd": PGD, "mifgsm": MIFGSM, "cw": CW, "apgd": APGD,
                                    "apgd-t": APGDT, "fab-t": FAB, "square": Square,
                                    "hopskipjump": HopSkipJump}

__all__ = ["ATTACKS", "Attack", "AttackResult", "AttackRun", "FGSM", "PGD", "ATTACK_LOSSES", "sample_loss", "succeeded"]
__all__ += ["GradientMaskingError", "from_torchattacks", "generate", "generate_batches"]
__all__ += ["MIFGSM", "CW", "APGD", "APGDT", "FAB", "Square", "HopSkipJump"]
__all__ += ["AutoAttack", "AttackLike", "TargetMode", "AdvGAN"]
__all__ += ["BPDA", "Transfer"]


def __getattr__(name: str):
    """``AdvGAN`` on first use (its module imports the GAN trainer)."""
    if name == "AdvGAN":
        from .advgan import AdvGAN

        return AdvGAN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

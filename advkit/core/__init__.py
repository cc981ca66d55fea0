"""advkit.core: the one min-max engine shared by attacks, training, defenses and GANs."""
from .constraints import (
    Box,
    Identity,
    Intersection,
    L1Ball,
    L2Ball,
    LinfBall,
    Projection,
    WeightClip,
    flat_norm,
    per_sample,
)
from .freeze import frozen
from .game import BackwardPlayer, Hook, Objective, Player, play, trainable_params
from .guard import DivergenceGuard, Limit, Stateful
from .momentum import MomentumStep
from .norms import L1, L2, NORMS, Linf, Norm, ball, get_norm
from .numbers import check_number
from .steps import L1Step, L2Step, OptimizerStep, SignStep, StepRule

__all__ = [
    "check_number",
    "Box", "Identity", "Intersection", "L1Ball", "L2Ball", "LinfBall", "Projection", "WeightClip", "ball",
    "flat_norm", "per_sample", "frozen", "BackwardPlayer", "Hook", "Objective", "Player", "play", "trainable_params",
    "DivergenceGuard", "Limit", "Stateful",
    "L1Step", "L2Step", "MomentumStep", "OptimizerStep", "SignStep", "StepRule",
    "L1", "L2", "Linf", "NORMS", "Norm", "get_norm",
]

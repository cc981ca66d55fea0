"""Defenses: augmentation with common corruptions (``CORRUPTIONS``, ``corrupt``, ``augmented_training``)."""
from .augment import augmented_training
from .corruptions import CORRUPTIONS, corrupt

__all__ = ["CORRUPTIONS", "augmented_training", "corrupt"]

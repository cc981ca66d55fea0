"""Defenses: adversarial training (``adversarial_training``), adversarial fine-tuning (``finetune``) and
augmentation with common corruptions (``CORRUPTIONS``, ``corrupt``, ``augmented_training``)."""
from ..data.corruptions import CORRUPTIONS, corrupt
from .augment import augmented_training
from .finetune import finetune
from .history import EpochRecord, History
from .training import adversarial_training, defense_model

__all__ = ["CORRUPTIONS", "EpochRecord", "History", "adversarial_training", "augmented_training", "corrupt",
           "defense_model", "finetune"]

"""Defenses: adversarial training (``adversarial_training``), adversarial fine-tuning (``finetune``) and
augmentation with common corruptions (``CORRUPTIONS``, ``corrupt``, ``augmented_training``). Each takes
its settings as keywords or as one validated options object (``TrainingOptions``, ``FinetuneOptions``,
``AugmentOptions``) and returns the model with its ``History``."""
from ..data.corruptions import CORRUPTIONS, corrupt
from .augment import AugmentOptions, augmented_training
from .finetune import FinetuneOptions, finetune
from .history import EpochRecord, History
from .training import TrainingOptions, adversarial_training, defense_model

__all__ = ["CORRUPTIONS", "AugmentOptions", "EpochRecord", "FinetuneOptions", "History", "TrainingOptions",
           "adversarial_training", "augmented_training", "corrupt", "defense_model", "finetune"]

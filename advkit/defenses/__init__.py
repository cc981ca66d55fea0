"""Defenses: adversarial training (``adversarial_training``), adversarial fine-tuning (``finetune``),
augmentation with common corruptions (``CORRUPTIONS``, ``corrupt``, ``augmented_training``), training
for randomized smoothing (``gaussian_training``: Gaussian augmentation, SmoothAdv). Each takes
its settings as keywords or as one validated options object (``TrainingOptions``, ``FinetuneOptions``,
``AugmentOptions``, ``GaussianOptions``) and returns the model with its ``History``. Randomized smoothing
certifies any model (``certify`` -> ``Certificate``, ``predict_smoothed``: advkit/smoothing.py, below
evaluation, which draws its curve). Input transforms published as defenses
(``JPEG``, ``BitDepth``) go in front of a model; attack through them with ``advkit.attacks.BPDA``."""
from ..data.corruptions import CORRUPTIONS, corrupt
from ..smoothing import ABSTAIN, Certificate, NoisyClassifier, certify, predict_smoothed
from .augment import AugmentOptions, augmented_training
from .finetune import FinetuneOptions, finetune
from .gaussian import GaussianOptions, gaussian_training, smoothadv_attack, smoothed_loss
from .history import EpochRecord, History
from .training import TrainingOptions, adversarial_training, defense_model
from .transforms import JPEG, BitDepth, GaussianNoise

__all__ = ["CORRUPTIONS", "AugmentOptions", "EpochRecord", "FinetuneOptions", "History", "TrainingOptions",
           "adversarial_training", "augmented_training", "corrupt", "defense_model", "finetune"]
__all__ += ["JPEG", "BitDepth", "GaussianNoise"]
__all__ += ["GaussianOptions", "gaussian_training", "smoothadv_attack", "smoothed_loss"]
__all__ += ["ABSTAIN", "Certificate", "NoisyClassifier", "certify", "predict_smoothed"]

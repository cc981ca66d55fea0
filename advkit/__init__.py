"""advkit: adversarial robustness for PyTorch on one min-max engine (attacks, GANs, defenses)."""
from . import attacks, core, data, evaluation, gan, models, train
from .evaluation import evaluate

__version__ = "0.1.0"
__all__ = ["attacks", "core", "data", "evaluation", "evaluate", "gan", "models", "train", "__version__"]

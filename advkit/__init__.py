"""advkit: adversarial robustness for PyTorch on one min-max engine (attacks, GANs, defenses)."""
from . import attacks, core, data, defenses, evaluation, gan, models, train
from .evaluation import evaluate

__version__ = "0.1.0"
__all__ = ["__version__", "attacks", "core", "data", "defenses", "evaluate", "evaluation", "gan", "models", "train"]

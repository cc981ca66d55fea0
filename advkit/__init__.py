"""advkit: adversarial robustness for PyTorch on one min-max engine (attacks, GANs, defenses)."""
from . import attacks, core, data, models, train

__version__ = "0.1.0"
__all__ = ["attacks", "core", "data", "models", "train", "__version__"]

"""Defenses: augmentation with common corruptions (``CORRUPTIONS``, ``corrupt``)."""
from .corruptions import CORRUPTIONS, corrupt

__all__ = ["CORRUPTIONS", "corrupt"]

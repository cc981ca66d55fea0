"""Robustness evaluation: accuracy versus perturbation size per attack and in the worst case,
sanity checks against gradient masking, before/after comparisons, and reports (json, md, png, html)."""
from .comparison import Comparison
from .evaluate import evaluate
from .report import Report
from .results import Check, ModelResult
from .specs import valid_names

__all__ = ["Check", "Comparison", "ModelResult", "Report", "evaluate", "valid_names"]

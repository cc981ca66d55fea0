"""Robustness evaluation: accuracy versus perturbation size per attack and in the worst case,
sanity checks against gradient masking, and reports (json, md, png, html)."""
from .evaluate import evaluate
from .report import Report
from .results import Check, ModelResult
from .specs import valid_names

__all__ = ["Check", "ModelResult", "Report", "evaluate", "valid_names"]

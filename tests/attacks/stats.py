"""Margins for randomized comparisons: how far a count of successes may move by chance alone."""
from __future__ import annotations

import math


def binomial_slack(rate: float, n: int, sigmas: float = 2.0) -> float:
    """``sigmas`` binomial standard deviations of a count of ``n`` trials at ``rate``, in samples
    (never below one sample, so a rate of 0 or 1 still allows one sample of chance)."""
    return max(sigmas * math.sqrt(rate * (1 - rate) * n), 1.0)


def binomial_bar(rate: float, n: int, sigmas: float = 3.0) -> float:
    """A bar for a success rate measured at ``rate``: ``sigmas`` standard deviations under it."""
    return rate - sigmas * math.sqrt(rate * (1 - rate) / n)

"""Margins for randomized comparisons: how far a count of successes may move by chance alone.

A rate measured at 0 or 1 still has a spread on another machine: the deviation uses the rate
kept at least one sample away from 0 and from n. A comparison of two attacks summed over seeds takes
its margin from the spread of their per-seed difference, measured once over 10 seeds (the test's
docstring gives the figures): :func:`spread_slack`."""
from __future__ import annotations

import math


def _deviation(rate: float, n: int) -> float:
    """The standard deviation of a success rate over ``n`` trials."""
    rate = min(max(rate, 1 / n), 1 - 1 / n)
    return math.sqrt(rate * (1 - rate) / n)


def binomial_slack(rate: float, n: int, sigmas: float = 2.0) -> float:
    """``sigmas`` binomial standard deviations of a count of ``n`` trials at ``rate``, in samples."""
    return sigmas * _deviation(rate, n) * n


def binomial_bar(rate: float, n: int, sigmas: float = 3.0) -> float:
    """A bar for a success rate measured at ``rate``: ``sigmas`` standard deviations under it."""
    return rate - sigmas * _deviation(rate, n)


def spread_slack(sd: float, seeds: int, sigmas: float = 3.0) -> float:
    """``sigmas`` standard deviations of a difference summed over ``seeds`` independent seeds, the
    difference of one seed having the measured standard deviation ``sd``: how far the summed
    difference may drift by chance alone; at least one sample (a spread measured at 0 on this
    machine need not be 0 on another, where the model trains to other weights)."""
    return max(sigmas * sd * math.sqrt(seeds), 1.0)

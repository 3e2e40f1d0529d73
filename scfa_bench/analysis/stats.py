"""Statistics used by the plots, the report and the regression gate.

Kept in one place (as airspeed velocity keeps its statistics apart) so that the
definition of "slower" and "significant" is written exactly once (speedups: results.speedup).

A timing is summarised by its median and its 20th-80th percentile interval. A
change between two timings counts only when it is both large (ratio beyond a
threshold) and significant (the two intervals do not overlap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd

# Percentiles that bound the interval of one measurement (do_bench quantiles).
LOW_QUANTILE = 0.2
HIGH_QUANTILE = 0.8


@dataclass(frozen=True)
class Interval:
    """A closed interval [low, high] of milliseconds."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"interval bounds must be finite, got [{self.low}, {self.high}]")
        if self.low > self.high:
            raise ValueError(f"interval low {self.low} is above high {self.high}")

    def overlaps(self, other: Interval) -> bool:
        return intervals_overlap(self, other)


class Change(str, Enum):
    """Verdict for one timing compared with its baseline."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    NOISE = "noise"


def quantile_interval(
    samples: Sequence[float], low: float = LOW_QUANTILE, high: float = HIGH_QUANTILE
) -> Interval:
    """The [low, high] quantile interval of raw timing samples (linear interpolation)."""
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"quantiles must satisfy 0 <= low <= high <= 1, got {low}, {high}")
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot take quantiles of an empty sample")
    if not np.all(np.isfinite(values)):
        raise ValueError("timing samples must be finite")
    lo, hi = np.quantile(values, [low, high])
    return Interval(float(lo), float(hi))


def intervals_overlap(a: Interval, b: Interval) -> bool:
    """True when the closed intervals share at least one point."""
    return a.low <= b.high and b.low <= a.high


def time_ratio(new_ms: float, base_ms: float) -> float:
    """new / base: above 1 means the new measurement is slower."""
    if not (new_ms > 0 and base_ms > 0 and math.isfinite(new_ms) and math.isfinite(base_ms)):
        raise ValueError(f"times must be positive and finite, got new={new_ms}, base={base_ms}")
    return new_ms / base_ms


def classify_change(
    new_ms: float,
    new_interval: Interval,
    base_ms: float,
    base_interval: Interval,
    max_slowdown: float,
) -> Change:
    """Two-condition gate: large (beyond the threshold) AND significant (no overlap).

    The threshold is symmetric in ratio, as in asv: a regression is new/base > 1 + t,
    an improvement is base/new > 1 + t.
    """
    if not (math.isfinite(max_slowdown) and max_slowdown >= 0):
        raise ValueError(f"max_slowdown must be a finite number >= 0, got {max_slowdown}")
    if intervals_overlap(new_interval, base_interval):
        return Change.NOISE
    ratio = time_ratio(new_ms, base_ms)
    factor = 1.0 + max_slowdown
    if ratio > factor:
        return Change.REGRESSION
    if ratio < 1.0 / factor:
        return Change.IMPROVEMENT
    return Change.NOISE


def fraction_of_ideal(speedup: float | pd.Series, density: float | pd.Series):
    """Measured speedup over the ideal 1/density: speedup * density."""
    return speedup * density

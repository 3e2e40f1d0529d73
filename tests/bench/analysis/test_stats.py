"""Statistics of the gate and the plots: intervals, overlap, two-condition change, speedups."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scfa_bench.analysis import stats
from scfa_bench.analysis.stats import Change, Interval


def test_quantile_interval_matches_linear_interpolation() -> None:
    samples = [5.0, 1.0, 3.0, 2.0, 4.0]  # sorted 1..5: q20 = 1.8, q80 = 4.2
    interval = stats.quantile_interval(samples)
    assert interval.low == pytest.approx(1.8)
    assert interval.high == pytest.approx(4.2)


@given(st.lists(st.floats(0.001, 1e4), min_size=1, max_size=50))
def test_quantile_interval_lies_within_the_samples(samples: list[float]) -> None:
    interval = stats.quantile_interval(samples)
    assert min(samples) <= interval.low <= float(np.median(samples)) <= interval.high
    assert interval.high <= max(samples)


@pytest.mark.parametrize(
    ("samples", "low", "high"),
    [([], 0.2, 0.8), ([1.0, math.nan], 0.2, 0.8), ([1.0], 0.8, 0.2), ([1.0], -0.1, 0.5)],
)
def test_quantile_interval_rejects_bad_input(samples: list[float], low: float, high: float) -> None:
    with pytest.raises(ValueError):
        stats.quantile_interval(samples, low, high)


def test_interval_rejects_reversed_bounds() -> None:
    with pytest.raises(ValueError, match="above"):
        Interval(2.0, 1.0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((1.0, 2.0), (1.5, 3.0), True),
        ((1.0, 2.0), (2.0, 3.0), True),  # touching counts as overlap
        ((1.0, 2.0), (2.01, 3.0), False),
        ((1.0, 5.0), (2.0, 3.0), True),  # containment
        ((3.0, 4.0), (1.0, 2.0), False),
    ],
)
def test_intervals_overlap(a: tuple, b: tuple, expected: bool) -> None:
    assert stats.intervals_overlap(Interval(*a), Interval(*b)) is expected
    assert stats.intervals_overlap(Interval(*b), Interval(*a)) is expected


def _timing(ms: float, spread: float) -> tuple[float, Interval]:
    return ms, Interval(ms * (1 - spread), ms * (1 + spread))


@pytest.mark.parametrize(
    ("factor", "spread", "expected"),
    [
        (1.20, 0.01, Change.REGRESSION),  # large and significant
        (1.20, 0.15, Change.NOISE),  # large but intervals overlap
        (1.03, 0.001, Change.NOISE),  # significant but small
        (0.80, 0.01, Change.IMPROVEMENT),
        (0.95, 0.001, Change.NOISE),
        (1.00, 0.0, Change.NOISE),
    ],
)
def test_classify_change(factor: float, spread: float, expected: Change) -> None:
    base_ms, base_iv = _timing(10.0, spread)
    new_ms, new_iv = _timing(10.0 * factor, spread)
    assert stats.classify_change(new_ms, new_iv, base_ms, base_iv, 0.10) is expected


def test_classify_change_threshold_is_symmetric_in_ratio() -> None:
    # 1/1.1 = 0.909: 0.92x is inside the band, 0.90x is an improvement.
    base = _timing(10.0, 0.001)
    assert stats.classify_change(*_timing(9.2, 0.001), *base, 0.10) is Change.NOISE
    assert stats.classify_change(*_timing(9.0, 0.001), *base, 0.10) is Change.IMPROVEMENT
    assert stats.classify_change(*_timing(10.9, 0.001), *base, 0.10) is Change.NOISE
    assert stats.classify_change(*_timing(11.2, 0.001), *base, 0.10) is Change.REGRESSION


def test_classify_change_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError, match="max_slowdown"):
        stats.classify_change(*_timing(1.0, 0.1), *_timing(1.0, 0.1), -0.1)


def test_time_ratio_rejects_non_positive_times() -> None:
    assert stats.time_ratio(3.0, 2.0) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        stats.time_ratio(0.0, 1.0)


def test_fraction_of_ideal_is_speedup_times_density() -> None:
    assert stats.fraction_of_ideal(4.0, 0.125) == pytest.approx(0.5)
    series = stats.fraction_of_ideal(pd.Series([2.0, 3.0]), pd.Series([0.5, 0.25]))
    assert series.tolist() == pytest.approx([1.0, 0.75])

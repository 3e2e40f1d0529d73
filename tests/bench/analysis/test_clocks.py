"""The gate's clock comparison between two runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from scfa_bench.analysis.clocks import compare_clocks
from scfa_bench.measure.telemetry import run_sm_clock


def rows(*clocks, status="ok"):
    return [SimpleNamespace(status=status, sm_mhz_median=c) for c in clocks]


def test_run_clock_is_the_median_of_ok_rows():
    assert run_sm_clock(rows(1980, 1755, 1980) + rows(900, status="error")) == 1980
    assert run_sm_clock(rows(None, None)) is None


def test_same_clocks_pass_and_different_ones_are_flagged():
    same = compare_clocks(rows(1980, 1980), rows(1965))
    assert not same.differs and "within 5%" in same.message
    slow = compare_clocks(rows(1980), rows(1755, 1740))
    assert slow.differs and slow.rel_diff == pytest.approx((1747.5 - 1980) / 1980)
    assert "1748 MHz vs baseline 1980 MHz (-11.7%)" in slow.message
    assert not compare_clocks(rows(1980), rows(1755), max_rel_diff=0.2).differs


def test_runs_without_telemetry_are_not_compared():
    result = compare_clocks(rows(None), rows(1980))
    assert not result.differs and result.rel_diff is None
    assert "no telemetry in the baseline" in result.message

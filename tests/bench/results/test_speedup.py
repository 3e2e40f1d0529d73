"""The one speedup rule: baseline ms / row ms at the same shape, mode and baseline axes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scfa_bench.results.row import ResultRow
from scfa_bench.results.speedup import fill_speedups

BASE = ResultRow("s", "dense", "fwd", 1, 1, 16, 64, None, None, "fp16", ms_median=4.0)


def test_fill_speedups_joins_dense_baseline_per_seq_len_and_mode() -> None:
    rows = [
        BASE,
        replace(BASE, seq_len=128, ms_median=8.0),
        replace(BASE, mode="bwd", ms_median=10.0),
        replace(BASE, impl="sparse", n_buckets=2, ms_median=2.0),
        replace(BASE, impl="sparse", n_buckets=4, seq_len=128, ms_median=1.0),
        replace(BASE, impl="sparse", n_buckets=4, mode="bwd", ms_median=5.0),
        replace(BASE, impl="sparse", n_buckets=8, seq_len=256, ms_median=1.0),  # no baseline
        replace(BASE, impl="sparse", n_buckets=16, status="oom", ms_median=None),
        replace(BASE, impl="qk", drop_rate=0.5, ms_median=0.5),
    ]
    speedups = [r.speedup for r in fill_speedups(rows, "dense")]
    assert speedups == [1.0, 1.0, 1.0, 2.0, 8.0, 2.0, None, None, 8.0]


def test_recomputes_unless_asked_to_keep_existing_speedups() -> None:
    rows = [BASE, replace(BASE, impl="sparse", n_buckets=8, ms_median=1.0, speedup=7.5)]
    assert fill_speedups(rows, "dense")[1].speedup == pytest.approx(4.0)
    assert fill_speedups(rows, "dense", keep_existing=True)[1].speedup == 7.5
    assert rows[1].speedup == 7.5  # the input is not modified


def test_a_baseline_using_an_axis_joins_only_rows_with_the_same_value() -> None:
    rows = [
        replace(BASE, impl="ref", n_buckets=2, ms_median=6.0),
        replace(BASE, impl="ref", n_buckets=4, ms_median=9.0),
        replace(BASE, impl="hash", n_buckets=4, ms_median=3.0),
        replace(BASE, impl="qk", drop_rate=0.5, ms_median=3.0),
    ]
    speedups = [r.speedup for r in fill_speedups(rows, "ref")]
    assert speedups[2] == pytest.approx(3.0)
    assert speedups[3] is None


def test_failed_baseline_rows_and_no_baseline_give_no_speedup() -> None:
    rows = [
        replace(BASE, status="oom", ms_median=None),
        replace(BASE, impl="hash", n_buckets=4, ms_median=3.0),
    ]
    assert [r.speedup for r in fill_speedups(rows, "dense")] == [None, None]
    assert fill_speedups(rows, None) == rows

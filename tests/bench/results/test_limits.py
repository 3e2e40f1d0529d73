"""fraction_of_limit: the fastest limit of a point counts; dense and limit rows get none."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scfa_bench.results.limits import fill_fraction_of_limit
from scfa_bench.results.row import ResultRow

POINT = dict(mode="fwd", batch=1, heads=2, head_dim=16, seq_len=64, dtype="fp16")


def _row(impl: str, ms: float | None, *, kind: str = "exact", **fields: object) -> ResultRow:
    values: dict[str, object] = {"n_buckets": 4, "drop_rate": None, **POINT, **fields}
    return ResultRow(suite="t", impl=impl, ms_median=ms, impl_kind=kind, **values)  # type: ignore[arg-type]


def test_the_fastest_of_two_limits_counts() -> None:
    rows = [
        _row("limit_fast", 2.0, kind="limit"),
        _row("scfa_hash", 10.0),
        _row("limit_slow", 5.0, kind="limit"),  # after the fast one: "last one wins" fails too
        _row("limit_failed", None, kind="limit", status="oom"),
        _row("sdpa_cudnn", 8.0, n_buckets=None),  # dense: no fraction
        _row("scfa_hash", 20.0, seq_len=128),  # no limit at this point
    ]
    filled = {(r.impl, r.seq_len): r.fraction_of_limit for r in fill_fraction_of_limit(rows)}
    # 2 ms / 10 ms; the slower limit would give 0.5.
    assert filled[("scfa_hash", 64)] == pytest.approx(0.2)
    assert filled[("limit_slow", 64)] is None and filled[("limit_fast", 64)] is None
    assert filled[("limit_failed", 64)] is None
    assert filled[("sdpa_cudnn", 64)] is None
    assert filled[("scfa_hash", 128)] is None


def test_a_failed_sparse_row_gets_no_fraction() -> None:
    rows = [_row("limit_fast", 2.0, kind="limit"), replace(_row("scfa_hash", None), status="oom")]
    assert [r.fraction_of_limit for r in fill_fraction_of_limit(rows)] == [None, None]

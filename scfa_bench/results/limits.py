"""Fraction of the limit: how close a sparse row comes to the best dense kernel doing the same
allowed work (`impl_kind == "limit"` rows, `impls.limits`).

fraction_of_limit = limit ms_median / this ms_median, at the same batch, heads, head_dim,
seq_len, dtype, mode and sparsity point (n_buckets for hash-sparse rows, drop_rate for QK-sparse
ones). 1.0 means as fast as the limit; dense rows and the limits themselves get none. When a
file holds several limits for one point the fastest one counts (the tightest bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from scfa_bench.results.row import ResultRow


def _point_key(row: ResultRow) -> tuple:
    return (
        row.batch,
        row.heads,
        row.head_dim,
        row.seq_len,
        row.dtype,
        row.mode,
        row.n_buckets,
        row.drop_rate,
    )


def fill_fraction_of_limit(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """`rows` with `fraction_of_limit` computed for every ok sparse row that has a limit."""
    best: dict[tuple, float] = {}
    for r in rows:
        if r.impl_kind == "limit" and r.status == "ok" and r.ms_median:
            key = _point_key(r)
            best[key] = min(best.get(key, r.ms_median), r.ms_median)
    result = []
    for r in rows:
        limit_ms = best.get(_point_key(r))
        sparse = r.n_buckets is not None or r.drop_rate is not None
        applies = sparse and r.impl_kind != "limit" and r.status == "ok" and r.ms_median
        fraction = limit_ms / r.ms_median if applies and limit_ms is not None else None
        result.append(replace(r, fraction_of_limit=fraction))
    return result

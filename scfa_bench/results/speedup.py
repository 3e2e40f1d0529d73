"""Speedup over the suite's baseline: the one definition, used while running and when reading.

speedup = baseline ms_median / this ms_median at the same batch, heads, head_dim, seq_len, dtype
and mode (and the same n_buckets / drop_rate when the baseline itself uses that axis); a dense
baseline row is joined to every sparse row of its seq_len. Model-suite rows also need the same
model and the same `compile`: a compiled step is compared with the compiled baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from scfa_bench.results.row import ResultRow


def _shape_key(row: ResultRow) -> tuple:
    shape = (row.batch, row.heads, row.head_dim, row.seq_len, row.dtype, row.mode)
    return (*shape, row.model, row.compile)


def baseline_match(row: ResultRow, baseline_rows: Iterable[ResultRow]) -> ResultRow | None:
    """The ok baseline row measured at the same shape, mode and (where it uses them) axes."""
    for base in baseline_rows:
        if base.status != "ok" or base.ms_median is None or _shape_key(base) != _shape_key(row):
            continue
        if base.n_buckets is not None and base.n_buckets != row.n_buckets:
            continue
        if base.drop_rate is not None and base.drop_rate != row.drop_rate:
            continue
        return base
    return None


def speedup_for(row: ResultRow, baseline_rows: Iterable[ResultRow]) -> float | None:
    """Baseline ms / row ms, or None when the row failed or has no ok baseline row to join."""
    base = baseline_match(row, baseline_rows)
    if base is None or row.status != "ok" or not row.ms_median or base.ms_median is None:
        return None
    return base.ms_median / row.ms_median


def fill_speedups(
    rows: Sequence[ResultRow], baseline: str | None, *, keep_existing: bool = False
) -> list[ResultRow]:
    """`rows` with every speedup computed from the `baseline` implementation's rows.

    With `keep_existing`, a speedup the row already has is kept (a CSV edited or written by
    another tool keeps its numbers); only empty ones are filled. Without a baseline the rows
    are returned as they are.
    """
    if not baseline:
        return list(rows)
    baseline_rows = [r for r in rows if r.impl == baseline]
    return [
        r
        if keep_existing and r.speedup is not None
        else replace(r, speedup=speedup_for(r, baseline_rows))
        for r in rows
    ]

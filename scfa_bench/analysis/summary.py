"""The end-of-run summary: speedups over the baseline at the largest seq_len, and status counts."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from scfa_bench.constants import ROW_MODES, WALL_CLOCK_WARNING
from scfa_bench.results.row import ResultRow


def _axis_label(row: ResultRow) -> str:
    if row.n_buckets is not None:
        label = f"nb={row.n_buckets}"
    elif row.drop_rate is not None:
        label = f"p={row.drop_rate:g}"
    else:
        label = "dense"
    if row.compile is not None:  # model suites
        label += ", compiled" if row.compile else ", eager"
    return label


def summary_table(rows: list[ResultRow], baseline: str) -> Table | None:
    """Speedup per implementation and n_buckets / drop_rate, per mode, at the largest seq_len
    with an ok row; None when nothing was measured."""
    ok = [r for r in rows if r.status == "ok"]
    if not ok:
        return None
    seq_len = max(r.seq_len for r in ok)
    at_len = [r for r in ok if r.seq_len == seq_len]
    modes = [m for m in ROW_MODES if any(r.mode == m for r in at_len)]
    title = f"seq_len {seq_len}: " + (
        f"speedup over {baseline} (median ms)" if baseline else "median ms (no baseline)"
    )
    table = Table(title=title)
    if any(r.timer == "wall_clock" for r in at_len):
        table.caption = f"warning: {WALL_CLOCK_WARNING}"
    for column in ("impl", "point", "density", "ideal"):
        table.add_column(column, justify="left" if column in ("impl", "point") else "right")
    for mode in modes:
        table.add_column(mode, justify="right")

    groups: dict[tuple[str, str], dict[str, ResultRow]] = {}
    for row in at_len:
        groups.setdefault((row.impl, _axis_label(row)), {})[row.mode] = row
    for (impl, point), by_mode in groups.items():
        any_row = next(iter(by_mode.values()))
        dens = any_row.density
        cells = []
        for mode in modes:
            row = by_mode.get(mode)
            if row is None:
                cells.append("")
            elif row.speedup is not None and impl != baseline:
                cells.append(f"{row.speedup:.3g}x ({row.ms_median:.3g})")
            else:
                cells.append(f"({row.ms_median:.3g})")
        table.add_row(
            impl,
            point,
            "" if dens is None else f"{dens:.3f}",
            "" if not dens else f"{1 / dens:.1f}x",
            *cells,
        )
    return table


def status_counts(rows: list[ResultRow]) -> Counter[str]:
    return Counter(r.status for r in rows)

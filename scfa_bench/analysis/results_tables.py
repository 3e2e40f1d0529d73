"""Markdown tables of one results file, for the generated results pages (`scfa-bench tables`).

Every number is a cell of the file: the `speedup` and `fraction_of_limit` columns as the run
wrote them, `ms_median` and `gpu_ms`. Nothing is recomputed here, so a page cannot disagree
with the CSV it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scfa_bench.results.row import ResultRow

# The mode a kernel suite's tables show when the file has it; otherwise its first mode.
PREFERRED_MODE = "fwd+bwd"
MISSING = "–"


def md_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    """A GitHub Markdown table as lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return MISSING
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def fmt_speedup(speedup: float | None) -> str:
    return MISSING if speedup is None else f"{speedup:.2f}x"


def axis_label(row: ResultRow) -> str:
    """`nb=8`, `p=0.8` or "" for a dense row."""
    if row.n_buckets is not None:
        return f"nb={row.n_buckets}"
    if row.drop_rate is not None:
        return f"p={row.drop_rate:g}"
    return ""


def impl_label(row: ResultRow) -> str:
    axis = axis_label(row)
    return f"`{row.impl}` {axis}" if axis else f"`{row.impl}`"


def _series_order(row: ResultRow, baseline: str) -> tuple:
    # The baseline first, then exact implementations, approximations, limits; by axis value.
    kind_rank = {"exact": 0, "": 0, "approximate": 1, "limit": 2}.get(row.impl_kind, 3)
    return (row.impl != baseline, kind_rank, row.impl, row.n_buckets or 0, row.drop_rate or 0.0)


def table_mode(rows: Sequence[ResultRow]) -> str:
    modes = [r.mode for r in rows]
    return PREFERRED_MODE if PREFERRED_MODE in modes else modes[0]


def _series(rows: Sequence[ResultRow], baseline: str) -> list[tuple[str, list[ResultRow]]]:
    """Rows grouped by (implementation, axis value), in display order."""
    groups: dict[tuple, list[ResultRow]] = {}
    for row in sorted(rows, key=lambda r: _series_order(r, baseline)):
        groups.setdefault((row.impl, row.n_buckets, row.drop_rate), []).append(row)
    return [(impl_label(members[0]), members) for members in groups.values()]


def kernel_tables(rows: Sequence[ResultRow], baseline: str) -> list[str]:
    """A kernel suite's ok rows of one mode: speedup over the baseline (ms) per seq_len, then
    the fraction of the limit where the run had limits."""
    seq_lens = sorted({r.seq_len for r in rows})
    header = ["implementation", *(f"T={t}" for t in seq_lens)]
    speed, fraction = [], []
    for label, members in _series(rows, baseline):
        by_t = {r.seq_len: r for r in members}
        is_base = members[0].impl == baseline
        speed.append(
            [
                f"{label} (baseline, ms)" if is_base else label,
                *(_speed_cell(by_t.get(t), is_base) for t in seq_lens),
            ]
        )
        if any(r.fraction_of_limit is not None for r in members):
            fraction.append([label, *(_fraction_cell(by_t.get(t)) for t in seq_lens)])
    lines = ["Speedup over the baseline (milliseconds):", "", *md_table(header, speed)]
    if fraction:
        lines += ["", "Fraction of the limit:", "", *md_table(header, fraction)]
    return lines


def _speed_cell(row: ResultRow | None, is_base: bool) -> str:
    if row is None:
        return MISSING
    if is_base:
        return fmt_ms(row.ms_median)
    return f"{fmt_speedup(row.speedup)} ({fmt_ms(row.ms_median)})"


def _fraction_cell(row: ResultRow | None) -> str:
    if row is None or row.fraction_of_limit is None:
        return MISSING
    return f"{row.fraction_of_limit:.2f}"


def model_table(rows: Sequence[ResultRow], baseline: str) -> list[str]:
    """A model suite's ok step rows: per (seq_len, batch, compile), the baseline's step ms
    (GPU ms) and every other attention's speedup (step ms / GPU ms)."""
    series = [(label, m) for label, m in _series(rows, baseline) if m[0].impl != baseline]
    points = sorted({(r.compile or False, r.seq_len, r.batch) for r in rows})
    header = ["T (B)", "compile", f"`{baseline}` step (GPU) ms", *(s[0] for s in series)]
    body = []
    for point in points:
        base = _at([r for r in rows if r.impl == baseline], point)
        compiled, seq_len, batch = point
        cells = [f"{seq_len} ({batch})", "on" if compiled else "off", _step_cell(base, None)]
        for _, members in series:
            row = _at(members, point)
            cells.append(MISSING if row is None else _step_cell(row, row.speedup))
        body.append(cells)
    return md_table(header, body)


def _at(members: Sequence[ResultRow], point: tuple[bool, int, int]) -> ResultRow | None:
    """The row of a model point (compiled, seq_len, batch), if measured."""
    return next((r for r in members if (bool(r.compile), r.seq_len, r.batch) == point), None)


def _step_cell(row: ResultRow | None, speedup: float | None) -> str:
    if row is None:
        return MISSING
    times = f"{fmt_ms(row.ms_median)} / {fmt_ms(row.gpu_ms)}"
    return times if speedup is None else f"{fmt_speedup(speedup)} ({times})"

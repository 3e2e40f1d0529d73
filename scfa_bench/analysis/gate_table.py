"""The gate's verdicts as a rich table: failing rows first, one line per compared row."""

from __future__ import annotations

from rich.table import Table

from scfa_bench.analysis.gate import GateResult, RowMeasurement, Verdict

_STYLE = {
    Verdict.REGRESSION: "bold red",
    Verdict.LOST: "bold red",
    Verdict.MISSING: "yellow",
    Verdict.IMPROVEMENT: "green",
    Verdict.RECOVERED: "green",
    Verdict.STILL_FAILING: "yellow",
    Verdict.NEW: "cyan",
    Verdict.NOISE: "dim",
}


def _fmt_ms(timing: RowMeasurement | None) -> str:
    if timing is None:
        return "-"
    if timing.status != "ok":
        return timing.status
    return f"{timing.ms_median:.4g} [{timing.ms_q20:.4g}, {timing.ms_q80:.4g}]"


def result_table(result: GateResult, *, include_noise: bool = True) -> Table:
    """A rich table of every compared row, failing verdicts first."""
    shapes = {r.key.shape_label() for r in result.rows}
    shape_note = f", {next(iter(shapes))}" if len(shapes) == 1 else ""
    table = Table(
        title=(
            f"scfa-bench check: {'PASS' if result.passed else 'FAIL'} "
            f"(max slowdown {result.max_slowdown:.0%}, intervals q20-q80{shape_note})"
        ),
        caption=", ".join(f"{n} {v}" for v, n in result.counts().items() if n),
    )
    table.add_column("verdict")
    table.add_column("impl")
    table.add_column("point")
    table.add_column("mode")
    if len(shapes) > 1:
        table.add_column("shape")
    table.add_column("base ms [q20, q80]", justify="right")
    table.add_column("new ms [q20, q80]", justify="right")
    table.add_column("new/base", justify="right")
    notes = any(r.new is not None and r.new.status != "ok" for r in result.rows)
    if notes:
        table.add_column("note", overflow="fold")
    for row in result.rows:
        if row.verdict == Verdict.NOISE and not include_noise:
            continue
        ratio = row.ratio
        note = row.new.error if row.new is not None and row.new.status != "ok" else ""
        cells = [
            f"[{_STYLE[row.verdict]}]{row.verdict.value}[/]",
            row.key.impl,
            row.key.point_label(),
            row.key.mode,
            *([row.key.shape_label()] if len(shapes) > 1 else []),
            _fmt_ms(row.base),
            _fmt_ms(row.new),
            f"{ratio:.3f}" if ratio is not None else "-",
            *([note[:200]] if notes else []),
        ]
        table.add_row(*cells)
    return table

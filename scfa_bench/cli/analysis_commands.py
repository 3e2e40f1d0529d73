"""`plot`, `report`, `check` and `tables`: reading finished runs. The logic lives in
`scfa_bench.analysis`; plotting (matplotlib) is imported only by the commands that draw, so
`check` and the rest of the CLI work even where matplotlib cannot be imported.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from scfa_bench.analysis import clocks, gate, gate_table
from scfa_bench.cli.common import err_console, reports_input_errors, wide_console

_DEFAULT_REPORTS = Path("reports")


def _default_out(csv_path: Path, out: Path | None) -> Path:
    return out if out is not None else _DEFAULT_REPORTS / csv_path.stem


ResultsArg = Annotated[Path, typer.Argument(help="Results CSV written by `scfa-bench run`.")]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Output folder [default: reports/<csv name>/]."),
]


@reports_input_errors
def plot_command(results_csv: ResultsArg, out: OutOpt = None) -> None:
    """Draw runtime, speedup, heatmap and fraction-of-ideal figures (PNG and SVG); one set
    per card when the CSV holds several. A training suite's CSV gets validation loss against
    tokens, against training seconds, and by position in the sequence."""
    from scfa_bench.analysis import by_card
    from scfa_bench.analysis.quality_frame import is_quality_csv
    from scfa_bench.results.reader import read_results

    if is_quality_csv(results_csv):
        from scfa_bench.analysis.quality_plots import quality_plots

        for figure in quality_plots(results_csv, _default_out(results_csv, out)):
            typer.echo(str(figure))
        return
    files = by_card.make_plots(read_results(results_csv), _default_out(results_csv, out))
    if not files:
        typer.echo("No figure drawn: no row with status ok has data to plot.")
    for plot_file in files:
        typer.echo(f"{plot_file.png}  {plot_file.svg.name}")


@reports_input_errors
def report_command(results_csv: ResultsArg, out: OutOpt = None) -> None:
    """Write a Markdown report (README.md) with environment, speedup tables, plots, failures;
    one per card, with an index, when the CSV holds several. A training suite's CSV gets the
    quality report: final loss per setting, its difference from dense, time to quality."""
    from scfa_bench.analysis import by_card
    from scfa_bench.analysis.quality_frame import is_quality_csv
    from scfa_bench.results.reader import read_results

    if is_quality_csv(results_csv):
        from scfa_bench.analysis.quality_report import quality_report

        typer.echo(
            f"report written to {quality_report(results_csv, _default_out(results_csv, out))}"
        )
        return
    path = by_card.write_report(read_results(results_csv), _default_out(results_csv, out))
    typer.echo(f"report written to {path}")


@reports_input_errors
def check_command(
    new_csv: Annotated[Path, typer.Argument(help="Results CSV to judge.")],
    baseline: Annotated[Path, typer.Option("--baseline", "-b", help="Baseline results CSV.")],
    max_slowdown: Annotated[
        float | None,
        typer.Option(
            help="Largest tolerated slowdown as a fraction (0.10 = 10% slower) "
            "[default: 0.10; 0.5 with --allow-wall-clock]."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    allow_different_device: Annotated[
        bool, typer.Option(help="Compare results measured on different cards.")
    ] = False,
    fail_on_missing: Annotated[
        bool, typer.Option(help="Also fail when baseline rows are missing from NEW.")
    ] = False,
    allow_wall_clock: Annotated[
        bool, typer.Option(help="Gate wall-clock (CPU interpreter) runs, with a wider threshold.")
    ] = False,
    require_same_kernels: Annotated[
        bool, typer.Option(help="Exit 2 when the baseline measured other kernels.")
    ] = False,
    max_clock_diff: Annotated[
        float,
        typer.Option(
            help="Largest tolerated difference of the runs' median SM clocks (0.05 = 5%)."
        ),
    ] = clocks.DEFAULT_MAX_CLOCK_DIFF,
    require_same_clocks: Annotated[
        bool, typer.Option(help="Refuse (exit 2) when the clocks differ by more than that.")
    ] = False,
) -> None:
    """Regression gate (help text: CHECK_HELP)."""
    from scfa_bench.errors import InputError
    from scfa_bench.results.reader import read_results

    new_results, base_results = read_results(new_csv), read_results(baseline)
    clock = clocks.compare_clocks(base_results.rows, new_results.rows, max_rel_diff=max_clock_diff)
    if clock.differs and require_same_clocks:
        raise InputError(f"{clock.message} (--require-same-clocks)")
    result = gate.compare(
        new_results,
        base_results,
        max_slowdown=max_slowdown,
        allow_different_device=allow_different_device,
        fail_on_missing=fail_on_missing,
        allow_wall_clock=allow_wall_clock,
        require_same_kernels=require_same_kernels,
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]{escape(warning)}[/]", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "clocks": asdict(clock)}, indent=2))
    else:
        console = wide_console()
        console.print(gate_table.result_table(result))
        style = "bold yellow" if clock.differs else "dim"
        console.print(f"[{style}]{'WARNING: ' if clock.differs else ''}{escape(clock.message)}[/]")
        verdict = "PASS" if result.passed else f"FAIL: {len(result.failing)} failing row(s)"
        if result.new_ok_rows == 0:
            verdict = f"FAIL: {new_csv} has no ok row at all"
        console.print(f"[bold]{escape(verdict)}[/]")
    raise typer.Exit(result.exit_code)


# One string per paragraph: Typer's help keeps hard line breaks of docstrings.
CHECK_HELP = (
    "Regression gate: compare NEW.csv with a baseline results CSV.\n\n"
    "Rows are matched by implementation, shape, dtype, point and mode. A row regresses when "
    "it is slower than the baseline by more than --max-slowdown AND the two 20-80 percentile "
    "intervals do not overlap; rows faster the same way are improvements. A row ok in the "
    "baseline and not ok in NEW fails the gate. Rows missing from NEW are listed and fail "
    "only with --fail-on-missing. NEW without any ok row fails.\n\n"
    "Wall-clock runs (CPU, Triton's interpreter) are refused: their times say nothing about "
    "GPU speed and vary too much between runs; --allow-wall-clock gates them with a default "
    "threshold of 0.5 (intervals must still be disjoint). A baseline whose meta names other "
    "kernels (kernels_hash) gets a warning; --require-same-kernels makes it exit 2.\n\n"
    "Clocks: each row records the median SM clock NVML saw while it was timed; when the two "
    "runs' clocks (the median over their ok rows) differ by more than --max-clock-diff a "
    "warning is printed, and with --require-same-clocks the gate refuses (exit 2).\n\n"
    "Exit codes: 0 pass, 1 regression, lost correctness or no ok row, 2 bad input (missing or "
    "malformed file, no rows in common, different cards without --allow-different-device, "
    "wall-clock runs without --allow-wall-clock, other kernels with --require-same-kernels, "
    "different clocks with --require-same-clocks)."
)


@reports_input_errors
def tables_command(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Write nothing; exit 1 when a committed page differs from its rendering.",
        ),
    ] = False,
    root: Annotated[
        Path, typer.Option(help="Repository root holding README.md and results/baselines/.")
    ] = Path("."),
) -> None:
    """Render the README's headline table and docs/results.md from results/baselines/."""
    from scfa_bench.analysis import tables

    if check:
        diffs = tables.page_diffs(root)
        for diff in diffs:
            typer.echo(diff, nl=False)
        if diffs:
            err_console.print(
                f"[bold red]{len(diffs)} page(s) differ from results/baselines/:[/] "
                "run `scfa-bench tables` and commit the result",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1)
        typer.echo("pages match results/baselines/")
        return
    written = tables.write_pages(root)
    for path in written:
        typer.echo(f"written {path}")
    if not written:
        typer.echo("pages already match results/baselines/")


def register(app: typer.Typer) -> None:
    """Add `plot`, `report`, `check` and `tables` to the app."""
    app.command("plot")(plot_command)
    app.command("report")(report_command)
    app.command("check", help=CHECK_HELP)(check_command)
    app.command("tables")(tables_command)

"""`run --gpus / --executor slurm / --shards` (a suite in shards run by worker processes or
Slurm array tasks, merged) and `merge` (part CSVs into one). The logic lives in
`scfa_bench.run.sharded` and `scfa_bench.results.merge`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scfa_bench.cli.common import (
    confirm_cpu_time,
    console,
    err_console,
    print_outcome_rows,
    register_plugins,
    reports_input_errors,
)
from scfa_bench.constants import FAILING_STATUSES
from scfa_bench.errors import EXIT_FAILURE, EXIT_INTERRUPTED


def print_shard_plan(request: Any, suite: Any) -> None:
    """`--dry-run` of a sharded run: each shard's tasks, rows, cost and seq_lens."""
    from scfa_bench.run.sharded.plan import cost_source, suite_shards
    from scfa_bench.run.sharded.supervisor import shard_count
    from scfa_bench.suite.grid import expand

    count = shard_count(request)
    tasks = expand(suite)
    cost = cost_source(request.cost_from)
    table = Table(title=f"suite {suite.name}: {count} shards")
    for column in ("shard", "tasks", "rows", "cost", "seq_len"):
        table.add_column(column, justify="left" if column == "seq_len" else "right")
    for index, positions in enumerate(suite_shards(suite, tasks, count, request.cost_from)):
        mine = [tasks[i] for i in positions]
        table.add_row(
            str(index),
            str(len(mine)),
            str(sum(len(t.modes) for t in mine)),
            f"{sum(cost(t) for t in mine):.1f}",
            ", ".join(str(s) for s in sorted({t.point.seq_len for t in mine})),
        )
    console.print(table)


def _display(request: Any, suite: Any) -> Any:
    from scfa_bench.run.sharded.display import PlainDisplay, RichDisplay

    return RichDisplay(suite.name) if request.progress else PlainDisplay()


def run_sharded_command(request: Any, suite: Any) -> None:
    """`run --gpus ...` / `run --executor slurm`: shards in worker processes, merged."""
    from scfa_bench.results.reader import read_results
    from scfa_bench.run.sharded.gpus import resolve_gpus
    from scfa_bench.run.sharded.slurm import SlurmOutcome
    from scfa_bench.run.sharded.supervisor import run_sharded, shard_count
    from scfa_bench.suite.grid import expand

    if request.way == "local" and request.resume is None:
        at_once = min(shard_count(request), len(resolve_gpus(request.gpus or "all")))
        confirm_cpu_time(request, suite, expand(suite), workers=at_once)
    register_plugins(suite, request.allow_plugins)  # refused here, before any worker starts
    outcome = run_sharded(request, suite, _display(request, suite))
    if outcome.interrupted:
        how = "--executor slurm" if request.way == "slurm" else f"--gpus {request.gpus or 'all'}"
        kept = "every finished row is kept"
        if isinstance(outcome, SlurmOutcome) and outcome.running_jobs:
            kept += f"; jobs {', '.join(outcome.running_jobs)} still run on the cluster"
        err_console.print(
            f"interrupted; {kept}. Continue with: scfa-bench run "
            f"{request.suite_file} {how} --resume {outcome.parts_dir}"
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    for failure in outcome.failed:
        err_console.print(f"[bold red]failed:[/] {failure}", highlight=False, soft_wrap=True)
    if outcome.csv_path is None:
        err_console.print(
            f"not merged; fix the cause and continue with --resume {outcome.parts_dir}"
        )
        raise typer.Exit(EXIT_FAILURE)
    counts = print_outcome_rows(read_results(outcome.csv_path).rows, suite.baseline or "")
    report = outcome.report
    if report is not None:
        for kind in ("missing", "conflicts", "duplicates"):
            for item in getattr(report, kind):
                err_console.print(f"{kind}: {item}", highlight=False, soft_wrap=True)
    console.print(f"results: {outcome.csv_path}\nparts:   {outcome.parts_dir}", highlight=False)
    if outcome.exit_code or any(counts[s] for s in FAILING_STATUSES):
        raise typer.Exit(EXIT_FAILURE)


@reports_input_errors
def merge_parts(
    parts: Annotated[
        list[Path], typer.Argument(help="Part CSVs, or folders of them (a run's .parts folder).")
    ],
    out: Annotated[Path, typer.Option("--out", help="The merged CSV (its meta beside it).")],
    allow_mixed_devices: Annotated[
        bool,
        typer.Option("--allow-mixed-devices", help="Merge parts measured on different cards."),
    ] = False,
    suite_file: Annotated[
        Path | None,
        typer.Option("--suite", help="Suite file: grid order, and rows missing from the parts."),
    ] = None,
) -> None:
    """Merge part CSVs into one CSV and meta; speedups recomputed across parts.

    Exit 1 when rows conflict or the grid has rows no part holds (the CSV is written anyway)."""
    from scfa_bench.results.merge import merge_command

    merged = merge_command(
        parts, out, allow_mixed_devices=allow_mixed_devices, suite_file=suite_file
    )
    report = merged.report
    for kind in ("missing", "conflicts", "duplicates"):
        for item in getattr(report, kind):
            err_console.print(f"{kind}: {item}", highlight=False, soft_wrap=True)
    console.print(
        f"merged {len(merged.rows)} rows from {len(merged.meta['merged_from'])} parts "
        f"({', '.join(report.devices) or 'no card named'}) into {out}",
        highlight=False,
    )
    if report.missing or report.conflicts:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    """Add `merge` to the app (`run`'s sharded modes are options of `run`)."""
    app.command("merge")(merge_parts)

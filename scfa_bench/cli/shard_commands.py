"""`run --gpus / --executor slurm / --shards` (a suite in shards run by worker processes or
Slurm array tasks, merged) and `merge` (part CSVs into one). The logic lives in
`scfa_bench.run` (shards, workers, Slurm) and `scfa_bench.results.merge`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scfa_bench.cli.common import console, err_console, reports_input_errors
from scfa_bench.constants import DEVICES, FAILING_STATUSES
from scfa_bench.errors import EXIT_FAILURE, EXIT_INTERRUPTED, InputError


def print_outcome_rows(rows: list[Any], baseline: str) -> Any:
    from scfa_bench.analysis.summary import status_counts, summary_table

    table = summary_table(rows, baseline)
    if table is not None:
        console.print(table)
    counts = status_counts(rows)
    console.print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for row in rows:
        if row.status != "ok":
            console.print(
                f"  {row.status}: {row.impl} T={row.seq_len} {row.mode}: {row.error}",
                highlight=False,
                soft_wrap=True,
            )
    return counts


def _print_shard_plan(suite: Any, count: int, cost_from: Path | None) -> None:
    from scfa_bench.run.shard import cost_source, suite_shards
    from scfa_bench.suite.grid import expand

    tasks = expand(suite)
    cost = cost_source(cost_from)
    table = Table(title=f"suite {suite.name}: {count} shards")
    for column in ("shard", "tasks", "rows", "cost", "seq_len"):
        table.add_column(column, justify="left" if column == "seq_len" else "right")
    for index, positions in enumerate(suite_shards(suite, tasks, count, cost_from)):
        mine = [tasks[i] for i in positions]
        table.add_row(
            str(index),
            str(len(mine)),
            str(sum(len(t.modes) for t in mine)),
            f"{sum(cost(t) for t in mine):.1f}",
            ", ".join(str(s) for s in sorted({t.point.seq_len for t in mine})),
        )
    console.print(table)


def run_sharded(
    suite_file: Path,
    out: Path,
    resume: Path | None,
    dry_run: bool,
    device: str | None,
    progress: bool,
    gpus: str | None,
    executor: str,
    shards: int | None,
    cost_from: Path | None,
    max_restarts: int,
    partition: str | None,
    time_min: int,
    gpus_per_task: int,
    array_parallelism: int | None,
) -> None:
    """`run --gpus ...` / `run --executor slurm`: shards in worker processes, merged."""
    from scfa_bench.results.reader import read_results
    from scfa_bench.run.gpus import resolve_gpus
    from scfa_bench.run.many import run_many
    from scfa_bench.run.slurm import SlurmOptions
    from scfa_bench.suite.parse import load_suite

    if device is not None and device not in DEVICES:
        raise InputError(f"--device: expected one of {', '.join(DEVICES)}; got {device!r}")
    if max_restarts < 0:
        raise InputError(f"--max-restarts must be >= 0, got {max_restarts}")
    suite = load_suite(suite_file)
    if dry_run:
        count = shards or (len(resolve_gpus(gpus)) if gpus is not None else 1)
        _print_shard_plan(suite, count, cost_from)
        return
    slurm = SlurmOptions(
        partition=partition,
        time_min=time_min,
        gpus_per_task=gpus_per_task,
        array_parallelism=array_parallelism,
    )
    outcome = run_many(
        suite_file,
        gpus=gpus,
        executor=executor,
        shards=shards,
        out_dir=out,
        resume=resume,
        cost_from=cost_from,
        device=device,
        max_restarts=max_restarts,
        progress=progress,
        slurm=slurm,
    )
    if outcome.interrupted:
        how = "--executor slurm" if executor == "slurm" else f"--gpus {gpus or 'all'}"
        err_console.print(
            f"interrupted; every finished row is kept. Continue with: scfa-bench run "
            f"{suite_file} {how} --resume {outcome.parts_dir}"
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
    from scfa_bench.run.many import merge_command

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

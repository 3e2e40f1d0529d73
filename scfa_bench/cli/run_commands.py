"""`run`, `validate`, `list` and `env`: running suites and describing the machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scfa_bench.cli.common import console, err_console, reports_input_errors
from scfa_bench.constants import DEVICES, FAILING_STATUSES
from scfa_bench.errors import EXIT_FAILURE, EXIT_INTERRUPTED, InputError


def _print_grid(suite: Any, tasks: list[Any], total_tasks: int) -> None:
    table = Table(title=f"suite {suite.name}: expanded grid")
    for column in ("#", "impl", "seq_len", "n_buckets", "drop_rate", "modes"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for i, task in enumerate(tasks, 1):
        p = task.point
        table.add_row(
            str(i),
            task.impl,
            str(p.seq_len),
            "" if p.n_buckets is None else str(p.n_buckets),
            "" if p.drop_rate is None else f"{p.drop_rate:g}",
            ", ".join(task.modes),
        )
    console.print(table)
    rows = sum(len(t.modes) for t in tasks)
    console.print(
        f"{len(tasks)} of {total_tasks} tasks (implementation x point), {rows} result rows to run"
    )


@reports_input_errors
def run(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML file, e.g. suites/smoke.yaml.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the CSV and meta file.")] = Path(
        "results"
    ),
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue this CSV of the same suite, skipping its rows."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the grid and its size only.")
    ] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cuda or cpu (overrides the suite's).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    profile_stages: Annotated[
        bool,
        typer.Option(
            "--profile-stages", help="Also profile every row (CUDA): stage_ms, gpu_idle_ms."
        ),
    ] = False,
) -> None:
    """Run a suite: check, time and measure every point; write results/<suite>-<time>.csv."""
    from scfa_bench.analysis.summary import status_counts, summary_table
    from scfa_bench.results.resume import done_keys, pending_tasks, read_for_resume
    from scfa_bench.run.loop import RunOptions, run_suite
    from scfa_bench.run.progress import RichReporter, SilentReporter
    from scfa_bench.suite.grid import expand
    from scfa_bench.suite.parse import load_suite

    if device is not None and device not in DEVICES:
        raise InputError(f"--device: expected one of {', '.join(DEVICES)}; got {device!r}")
    suite = load_suite(suite_file)
    if dry_run:
        tasks = expand(suite)
        done = done_keys(read_for_resume(resume, suite)) if resume is not None else set()
        _print_grid(suite, pending_tasks(tasks, suite, done), len(tasks))
        return

    options = RunOptions(
        out_dir=out,
        resume=resume,
        device=device,
        argv=tuple(sys.argv),
        profile_stages=profile_stages,
    )
    reporter = RichReporter(console, suite.name) if progress else SilentReporter()
    outcome = run_suite(suite, options, reporter)

    table = summary_table(outcome.rows, suite.baseline or "")
    if table is not None:
        console.print(table)
    counts = status_counts(outcome.rows)
    console.print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for row in outcome.rows:
        if row.status != "ok":
            console.print(
                f"  {row.status}: {row.impl} T={row.seq_len} {row.mode}: {row.error}",
                highlight=False,
                soft_wrap=True,
            )
    console.print(f"results: {outcome.csv_path}\nmeta:    {outcome.meta_path}", highlight=False)
    if outcome.interrupted:
        err_console.print(f"interrupted; continue with --resume {outcome.csv_path}")
        raise typer.Exit(EXIT_INTERRUPTED)
    if any(counts[s] for s in FAILING_STATUSES):
        raise typer.Exit(EXIT_FAILURE)


@reports_input_errors
def validate(
    suite_files: Annotated[list[Path], typer.Argument(help="Suite YAML files to validate.")],
) -> None:
    """Validate suite files and print the size of each grid."""
    from scfa_bench.suite.grid import expand, row_count
    from scfa_bench.suite.parse import load_suite

    for path in suite_files:
        suite = load_suite(path)
        tasks = expand(suite)
        console.print(
            f"ok: {path} (suite {suite.name}: {len(tasks)} tasks, {row_count(tasks)} rows)",
            highlight=False,
        )


@reports_input_errors
def list_impls(
    device: Annotated[
        str, typer.Option("--device", help="Device to check availability on.")
    ] = "auto",
) -> None:
    """List registered implementations, the sweep axes each uses, and availability here."""
    from scfa_bench.impls.plugins import register_entry_points
    from scfa_bench.impls.registry import all_specs
    from scfa_bench.measure.envinfo import resolve_device

    register_entry_points()
    dev = resolve_device(device)
    table = Table(title=f"implementations (availability on {dev})")
    table.add_column("name", no_wrap=True)  # names and axes must stay copy-pasteable
    table.add_column("pattern")
    table.add_column("kind", no_wrap=True)
    table.add_column("axes", no_wrap=True)
    for column in ("backward", "devices", "available", "description"):
        table.add_column(column, overflow="fold")
    for spec in all_specs().values():
        if dev in spec.devices:
            ok, reason = spec.create().available(dev)
        else:
            ok, reason = False, f"not registered for {dev}"
        table.add_row(
            spec.name,
            spec.pattern,
            spec.kind,
            ", ".join(spec.axes) or "-",
            "yes" if spec.has_backward else "no",
            ", ".join(spec.devices),
            "yes" if ok else f"no: {reason}",
            spec.description,
        )
    console.print(table)


def env() -> None:
    """Print the card, driver, CUDA, torch, triton, NVML availability, python and git revision."""
    from scfa_bench.measure.envinfo import environment

    table = Table(title="environment")
    table.add_column("key")
    table.add_column("value")
    for key, value in environment().items():
        table.add_row(key, str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `run`, `validate`, `list` and `env` to the app."""
    app.command()(run)
    app.command()(validate)
    app.command("list")(list_impls)
    app.command()(env)

"""`run`, `validate`, `list` and `env`: running suites and describing the machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scfa_bench.cli.common import console, err_console, reports_input_errors
from scfa_bench.cli.training_commands import training_run, training_validated
from scfa_bench.constants import DEVICES, FAILING_STATUSES
from scfa_bench.errors import EXIT_FAILURE, EXIT_INTERRUPTED, InputError


def _print_grid(suite: Any, tasks: list[Any], total_tasks: int) -> None:
    table = Table(title=f"suite {suite.name}: expanded grid")
    for column in ("#", "impl", "seq_len", "n_buckets", "drop_rate", "compile", "modes"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for i, task in enumerate(tasks, 1):
        p = task.point
        table.add_row(
            str(i),
            task.impl,
            str(p.seq_len),
            "" if p.n_buckets is None else str(p.n_buckets),
            "" if p.drop_rate is None else f"{p.drop_rate:g}",
            "" if p.compile is None else str(p.compile).lower(),
            ", ".join(task.modes),
        )
    console.print(table)
    rows = sum(len(t.modes) for t in tasks)
    console.print(
        f"{len(tasks)} of {total_tasks} tasks (implementation x point), {rows} result rows to run"
    )


def _shard_tasks(tasks: list[Any], suite: Any, shard: str, cost_from: Path | None) -> list[Any]:
    from scfa_bench.run.shard import parse_shard, suite_shard

    index, count = parse_shard(shard)
    return suite_shard(suite, tasks, index, count, cost_from)


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
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="Run only shard I of N (I/N, 0 <= I < N) into its own CSV."),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option("--gpus", help="all, a count or ids (0,2): one worker process per GPU."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="local, or slurm (through submitit).")
    ] = "local",
    shards: Annotated[
        int | None,
        typer.Option("--shards", help="Shards of a --gpus or Slurm run (default: one per GPU)."),
    ] = None,
    cost_from: Annotated[
        Path | None,
        typer.Option("--cost-from", help="Balance shards by the times of this earlier CSV."),
    ] = None,
    max_restarts: Annotated[
        int, typer.Option("--max-restarts", help="Restarts (resubmissions) per shard.")
    ] = 3,
    partition: Annotated[str | None, typer.Option("--partition", help="Slurm partition.")] = None,
    time_min: Annotated[
        int, typer.Option("--time", help="Slurm time limit per array task, minutes.")
    ] = 60,
    gpus_per_task: Annotated[
        int, typer.Option("--gpus-per-task", help="GPUs per Slurm array task.")
    ] = 1,
    array_parallelism: Annotated[
        int | None,
        typer.Option("--array-parallelism", help="Slurm array tasks running at once."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="With --resume: resume even if the suite file changed."),
    ] = False,
    profile_stages: Annotated[
        bool,
        typer.Option(
            "--profile-stages", help="Also profile every row (CUDA): stage_ms, gpu_idle_ms."
        ),
    ] = False,
) -> None:
    """Run a suite: check, time and measure every point; write results/<suite>-<time>.csv.

    With --gpus or --executor slurm the grid is split into shards run by separate processes
    and merged into one CSV; --shard I/N runs one shard here (merge parts with `merge`)."""
    from scfa_bench.cli.shard_commands import run_sharded

    if training_run(suite_file, locals()):  # a training suite: cli.training_commands
        return
    slurm_only = {"--partition": partition, "--array-parallelism": array_parallelism}
    if executor != "slurm" and any(v is not None for v in slurm_only.values()):
        given = ", ".join(k for k, v in slurm_only.items() if v is not None)
        raise InputError(f"{given}: only with --executor slurm")
    if shard is not None and (gpus is not None or executor != "local" or shards is not None):
        raise InputError("--shard runs one shard here; it does not go with --gpus/--executor")
    if gpus is not None and executor == "slurm":
        raise InputError("--gpus is for local runs; on Slurm use --gpus-per-task")
    sharded = gpus is not None or executor != "local" or shards is not None
    if profile_stages and (sharded or shard is not None):
        raise InputError("--profile-stages runs here only; not with --shard/--gpus/--executor")
    if sharded or (resume is not None and resume.is_dir()):
        run_sharded(
            suite_file,
            out,
            resume,
            dry_run,
            device,
            progress,
            gpus,
            executor,
            shards,
            cost_from,
            max_restarts,
            partition,
            time_min,
            gpus_per_task,
            array_parallelism,
        )
        return
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
        if shard is not None:
            tasks = _shard_tasks(tasks, suite, shard, cost_from)
        done = done_keys(read_for_resume(resume, suite)) if resume is not None else set()
        _print_grid(suite, pending_tasks(tasks, suite, done), len(tasks))
        return

    echo = lambda message: err_console.print(message, highlight=False, soft_wrap=True)
    reporter = RichReporter(console, suite.name) if progress else SilentReporter(echo)
    if shard is not None:
        from scfa_bench.run.many import run_one_shard

        outcome = run_one_shard(
            suite_file,
            shard,
            out_dir=out,
            resume=resume,
            cost_from=cost_from,
            device=device,
            reporter=reporter,
        )
    else:
        options = RunOptions(
            out_dir=out,
            resume=resume,
            device=device,
            argv=tuple(sys.argv),
            force=force,
            profile_stages=profile_stages,
        )
        outcome = run_suite(suite, options, reporter)

    table = summary_table(outcome.rows, suite.baseline or "")
    if table is not None:
        console.print(table)
    counts = status_counts(outcome.rows)
    console.print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    # One line per (status, implementation, reason): 162 identical `unavailable` lines help no one.
    failed: dict[tuple[str, str, str], list[Any]] = {}
    for row in outcome.rows:
        if row.status != "ok":
            failed.setdefault((row.status, row.impl, row.error), []).append(row)
    for (status, impl, error), rows in failed.items():
        where = f"T={rows[0].seq_len} {rows[0].mode}" if len(rows) == 1 else f"{len(rows)} rows"
        console.print(f"  {status}: {impl} {where}: {error}", highlight=False, soft_wrap=True)
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
        if suite.training is not None:
            console.print(training_validated(path, suite), highlight=False)
            continue
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
    for column in ("backward", "supports", "available", "description"):
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
            spec.supports_text(),
            "yes" if ok else f"no: {reason}",
            spec.description,
        )
    console.print(table)
    _print_model_attentions()


def _print_model_attentions() -> None:
    """The attentions a model suite (`model:` section) can name."""
    from scfa_bench.e2e.attention import PLUGS

    table = Table(title="attentions of model suites")
    for column in ("name", "pattern", "axes", "description"):
        table.add_column(column, no_wrap=column != "description", overflow="fold")
    for info in PLUGS.values():
        table.add_row(info.name, info.pattern, ", ".join(info.axes) or "-", info.description)
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

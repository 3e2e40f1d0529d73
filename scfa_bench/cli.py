"""The `scfa-bench` command line: run, validate, list, env (plot/report/check come from
`scfa_bench.cli_analysis` when present).

Exit codes: 0 success; 1 a run finished but some row is `incorrect` or `error`; 2 bad input
(unreadable or invalid suite, unknown implementation, bad option); 130 interrupted by Ctrl-C
(the CSV keeps every finished row; `--resume` continues it).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from scfa_bench.errors import InputError

EXIT_FAILED_ROWS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
FAILING_STATUSES = ("incorrect", "error")

app = typer.Typer(
    help="Benchmark Sparse Causal Flash Attention kernels against dense baselines.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def reports_input_errors(command: F) -> F:
    """Bad input -> one message on stderr, no traceback, exit 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main() -> None:
    """Benchmark Sparse Causal Flash Attention kernels against dense baselines."""
    from scfa_bench.envinfo import use_interpreter_without_cuda

    use_interpreter_without_cuda()


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


@app.command()
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
) -> None:
    """Run a suite: check, time and measure every point; write results/<suite>-<time>.csv.

    With --gpus or --executor slurm the grid is split into shards run by separate processes
    and merged into one CSV; --shard I/N runs one shard here (merge parts with `merge`)."""
    slurm_flags = {
        "--partition": partition,
        "--array-parallelism": array_parallelism,
    }
    if executor != "slurm" and any(v is not None for v in slurm_flags.values()):
        given = ", ".join(k for k, v in slurm_flags.items() if v is not None)
        raise InputError(f"{given}: only with --executor slurm")
    if shard is not None and (gpus is not None or executor != "local" or shards is not None):
        raise InputError("--shard runs one shard here; it does not go with --gpus/--executor")
    if gpus is not None and executor == "slurm":
        raise InputError("--gpus is for local runs; on Slurm use --gpus-per-task")
    sharded = gpus is not None or executor != "local" or shards is not None
    if sharded or (resume is not None and resume.is_dir()):
        _run_many(
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
    from scfa_bench.grid import expand
    from scfa_bench.progress import RichReporter
    from scfa_bench.results import done_keys, read_rows
    from scfa_bench.runner import RunOptions, SilentReporter, pending_tasks, run_suite
    from scfa_bench.suite import DEVICES, load_suite
    from scfa_bench.summary import status_counts, summary_table

    if device is not None and device not in DEVICES:
        raise InputError(f"--device: expected one of {', '.join(DEVICES)}; got {device!r}")
    suite = load_suite(suite_file)
    if dry_run:
        tasks = expand(suite)
        if shard is not None:
            from scfa_bench.run.shard import measured_cost, parse_shard
            from scfa_bench.run.shard import shard as shard_of

            index, count = parse_shard(shard)
            cost = measured_cost(read_rows(cost_from)) if cost_from is not None else None
            tasks = shard_of(tasks, index, count, cost, suite.baseline)
        done = done_keys(read_rows(resume)) if resume is not None else set()
        _print_grid(suite, pending_tasks(tasks, suite, done), len(tasks))
        return

    reporter = RichReporter(console, suite.name) if progress else SilentReporter()
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
        options = RunOptions(out_dir=out, resume=resume, device=device, argv=tuple(sys.argv))
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
        raise typer.Exit(EXIT_FAILED_ROWS)


def _print_outcome_rows(rows: list[Any], baseline: str) -> Any:
    from scfa_bench.summary import status_counts, summary_table

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
    from scfa_bench.grid import expand
    from scfa_bench.results import read_rows
    from scfa_bench.run.shard import measured_cost, plan, predicted_cost

    tasks = expand(suite)
    cost = measured_cost(read_rows(cost_from)) if cost_from is not None else predicted_cost
    table = Table(title=f"suite {suite.name}: {count} shards")
    for column in ("shard", "tasks", "rows", "cost", "seq_len"):
        table.add_column(column, justify="left" if column == "seq_len" else "right")
    for index, positions in enumerate(plan(tasks, count, cost, suite.baseline)):
        mine = [tasks[i] for i in positions]
        table.add_row(
            str(index),
            str(len(mine)),
            str(sum(len(t.modes) for t in mine)),
            f"{sum(cost(t) for t in mine):.1f}",
            ", ".join(str(s) for s in sorted({t.point.seq_len for t in mine})),
        )
    console.print(table)


def _run_many(
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
    from scfa_bench.results import read_rows
    from scfa_bench.run.many import run_many
    from scfa_bench.run.slurm import SlurmOptions
    from scfa_bench.run.workers import resolve_gpus
    from scfa_bench.suite import DEVICES, load_suite

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
        raise typer.Exit(EXIT_FAILED_ROWS)
    counts = _print_outcome_rows(read_rows(outcome.csv_path), suite.baseline or "")
    report = outcome.report
    if report is not None:
        for kind in ("missing", "conflicts", "duplicates"):
            for item in getattr(report, kind):
                err_console.print(f"{kind}: {item}", highlight=False, soft_wrap=True)
    console.print(f"results: {outcome.csv_path}\nparts:   {outcome.parts_dir}", highlight=False)
    if outcome.exit_code or any(counts[s] for s in FAILING_STATUSES):
        raise typer.Exit(EXIT_FAILED_ROWS)


@app.command("merge")
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
        raise typer.Exit(EXIT_FAILED_ROWS)


@app.command()
@reports_input_errors
def validate(
    suite_files: Annotated[list[Path], typer.Argument(help="Suite YAML files to validate.")],
) -> None:
    """Validate suite files and print the size of each grid."""
    from scfa_bench.grid import expand, row_count
    from scfa_bench.suite import load_suite

    for path in suite_files:
        suite = load_suite(path)
        tasks = expand(suite)
        console.print(
            f"ok: {path} (suite {suite.name}: {len(tasks)} tasks, {row_count(tasks)} rows)",
            highlight=False,
        )


@app.command("list")
@reports_input_errors
def list_impls(
    device: Annotated[
        str, typer.Option("--device", help="Device to check availability on.")
    ] = "auto",
) -> None:
    """List registered implementations, the sweep axes each uses, and availability here."""
    from scfa_bench.envinfo import resolve_device
    from scfa_bench.registry import all_specs

    dev = resolve_device(device)
    table = Table(title=f"implementations (availability on {dev})")
    table.add_column("name", no_wrap=True)  # names and axes must stay copy-pasteable
    table.add_column("pattern")
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
            ", ".join(spec.axes) or "-",
            "yes" if spec.has_backward else "no",
            ", ".join(spec.devices),
            "yes" if ok else f"no: {reason}",
            spec.description,
        )
    console.print(table)


@app.command()
def env() -> None:
    """Print the card, driver, CUDA, torch, triton, NVML availability, python and git revision."""
    from scfa_bench.envinfo import environment

    table = Table(title="environment")
    table.add_column("key")
    table.add_column("value")
    for key, value in environment().items():
        table.add_row(key, str(value))
    console.print(table)


try:
    from scfa_bench.cli_analysis import register as _register_analysis
except ImportError:  # the plot/report/check commands are optional
    _register_analysis = None
if _register_analysis is not None:
    _register_analysis(app)

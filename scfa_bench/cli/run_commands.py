"""`run`, `validate`, `list` and `env`: running suites and describing the machine.

`run` turns its options into one checked `RunRequest` (`scfa_bench.run.request`), parses the
suite once, and hands both to the way the request names: here in this process (also one
`--shard`), or to the sharded supervisor (`cli.shard_commands`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scfa_bench.cli.common import (
    confirm_cpu_time,
    console,
    err_console,
    load_suite_reporting,
    print_outcome_rows,
    register_plugins,
    reports_input_errors,
)
from scfa_bench.cli.run_options import (
    CacheDirOpt,
    CostFromOpt,
    CpuMinutesOpt,
    DeviceOpt,
    DryRunOpt,
    ExecutorOpt,
    ForceOpt,
    GpusOpt,
    GpusPerTaskOpt,
    OutOpt,
    ParallelismOpt,
    PartitionOpt,
    PluginsOpt,
    ProgressOpt,
    RestartsOpt,
    ResumeOpt,
    ShardOpt,
    ShardsOpt,
    StagesOpt,
    SuiteArg,
    TimeOpt,
    YesOpt,
)
from scfa_bench.cli.training_commands import training_run, training_validated
from scfa_bench.constants import FAILING_STATUSES
from scfa_bench.errors import EXIT_FAILURE, EXIT_INTERRUPTED

Opt = typer.Option


def _print_grid(suite: Any, tasks: list[Any], count_line: str) -> None:
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
    console.print(f"{count_line} (implementation x point), {rows} result rows to run")


def _tasks_here(request: Any, suite: Any) -> tuple[list[Any], str]:
    """The pending tasks this process would run, and the line that counts them."""
    from scfa_bench.results.resume import done_keys, pending_tasks, read_for_resume
    from scfa_bench.run.sharded.plan import suite_shard
    from scfa_bench.suite.grid import expand

    tasks = expand(suite)
    mine, where = tasks, ""
    if request.shard is not None:
        index, count = request.shard
        mine = suite_shard(suite, tasks, index, count, request.cost_from)
        where = f" in shard {index}/{count}"
    done = done_keys(read_for_resume(request.resume, suite)) if request.resume else set()
    todo = pending_tasks(mine, suite, done)
    line = f"{len(mine)} of {len(tasks)} tasks{where}"
    if len(todo) != len(mine):
        line += f", {len(todo)} pending"
    if not where:  # one process: pending of the whole grid, as it always read
        line = f"{len(todo)} of {len(tasks)} tasks"
    return todo, line


def _run_here(request: Any, suite: Any, tasks: list[Any]) -> None:
    """One process: the whole grid, or one `--shard`, into its own CSV."""
    from scfa_bench.run.loop import RunOptions, run_suite
    from scfa_bench.run.progress import RichReporter, SilentReporter
    from scfa_bench.run.sharded.supervisor import run_one_shard

    confirm_cpu_time(request, suite, tasks)
    register_plugins(suite, request.allow_plugins)
    echo = lambda message: err_console.print(message, highlight=False, soft_wrap=True)
    reporter = RichReporter(console, suite.name) if request.progress else SilentReporter(echo)
    if request.shard is not None:
        outcome = run_one_shard(request, suite, reporter)
    else:
        options = RunOptions(
            out_dir=request.out,
            resume=request.resume,
            device=request.device,
            argv=request.argv,
            force=request.force,
            profile_stages=request.profile_stages,
        )
        outcome = run_suite(suite, options, reporter)
    counts = print_outcome_rows(outcome.rows, suite.baseline or "")
    console.print(f"results: {outcome.csv_path}\nmeta:    {outcome.meta_path}", highlight=False)
    if outcome.interrupted:
        err_console.print(f"interrupted; continue with --resume {outcome.csv_path}")
        raise typer.Exit(EXIT_INTERRUPTED)
    if any(counts[s] for s in FAILING_STATUSES):
        raise typer.Exit(EXIT_FAILURE)


@reports_input_errors
def run(
    suite_file: SuiteArg,
    out: OutOpt = Path("results"),
    resume: ResumeOpt = None,
    dry_run: DryRunOpt = False,
    device: DeviceOpt = None,
    progress: ProgressOpt = True,
    shard: ShardOpt = None,
    gpus: GpusOpt = None,
    executor: ExecutorOpt = "local",
    shards: ShardsOpt = None,
    cost_from: CostFromOpt = None,
    max_restarts: RestartsOpt = 3,
    partition: PartitionOpt = None,
    time_min: TimeOpt = 60,
    gpus_per_task: GpusPerTaskOpt = 1,
    array_parallelism: ParallelismOpt = None,
    force: ForceOpt = False,
    profile_stages: StagesOpt = False,
    allow_plugins: PluginsOpt = False,
    cache_dir: CacheDirOpt = None,
    yes: YesOpt = False,
    max_cpu_minutes: CpuMinutesOpt = 10.0,
) -> None:
    """Run a suite: check, time and measure every point; write results/<suite>-<time>.csv.

    With --gpus or --executor slurm the grid is split into shards run by separate processes
    and merged into one CSV; --shard I/N runs one shard here (merge parts with `merge`). On
    the CPU a run predicted to take longer than --max-cpu-minutes is asked about first."""
    from scfa_bench.cli.shard_commands import print_shard_plan, run_sharded_command
    from scfa_bench.run.request import build_request

    if training_run(suite_file, locals()):  # a training suite: cli.training_commands
        return
    request = build_request(
        suite_file,
        shard=shard,
        gpus=gpus,
        executor=executor,
        shards=shards,
        resume=resume,
        partition=partition,
        time_min=time_min,
        gpus_per_task=gpus_per_task,
        array_parallelism=array_parallelism,
        max_restarts=max_restarts,
        max_cpu_minutes=max_cpu_minutes,
        dry_run=dry_run,
        device=device,
        out=out,
        progress=progress,
        cost_from=cost_from,
        force=force,
        profile_stages=profile_stages,
        allow_plugins=allow_plugins,
        cache_dir=cache_dir,
        yes=yes,
        argv=tuple(sys.argv),
    )
    suite = load_suite_reporting(request.suite_file)
    if request.sharded:
        if request.dry_run:
            print_shard_plan(request, suite)
        else:
            run_sharded_command(request, suite)
        return
    tasks, count_line = _tasks_here(request, suite)
    if request.dry_run:
        _print_grid(suite, tasks, count_line)
        return
    _run_here(request, suite, tasks)


@reports_input_errors
def validate(
    suite_files: Annotated[list[Path], typer.Argument(help="Suite YAML files to validate.")],
) -> None:
    """Validate suite files and print the size of each grid."""
    from scfa_bench.suite.grid import expand, row_count

    for path in suite_files:
        suite = load_suite_reporting(path)
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
    device: Annotated[str, Opt("--device", help="Device to check availability on.")] = "auto",
    details: Annotated[
        bool, Opt("--details", help="Every column: axes, backward, supports, availability.")
    ] = False,
) -> None:
    """List registered implementations (name, pattern, kind, devices; more with --details)."""
    from scfa_bench.impls.plugins import register_entry_points
    from scfa_bench.impls.registry import all_specs
    from scfa_bench.measure.envinfo import resolve_device

    register_entry_points()
    specs = list(all_specs().values())
    if not details:
        table = Table(title="implementations (--details: axes, support, availability)")
        for column in ("name", "pattern", "kind", "devices"):
            table.add_column(column, no_wrap=True)  # names must stay copy-pasteable
        for spec in specs:
            table.add_row(spec.name, spec.pattern, spec.kind, ", ".join(spec.devices))
        console.print(table)
        _print_model_attentions(details)
        return
    dev = resolve_device(device)
    table = Table(title=f"implementations (availability on {dev})")
    table.add_column("name", no_wrap=True)
    table.add_column("pattern")
    table.add_column("kind", no_wrap=True)
    table.add_column("axes", no_wrap=True)
    for column in ("backward", "supports", "available", "description"):
        table.add_column(column, overflow="fold")
    for spec in specs:
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
    _print_model_attentions(details)


def _print_model_attentions(details: bool) -> None:
    """The attentions a model suite (`model:` section) can name."""
    from scfa_bench.e2e.attention import PLUGS

    table = Table(title="attentions of model suites")
    columns = ("name", "pattern", "axes", "description") if details else ("name", "pattern")
    for column in columns:
        table.add_column(column, no_wrap=column != "description", overflow="fold")
    for info in PLUGS.values():
        cells = (info.name, info.pattern, ", ".join(info.axes) or "-", info.description)
        table.add_row(*cells[: len(columns)])
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

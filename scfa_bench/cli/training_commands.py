"""`run` of a training suite (`training:` section): options, the end-of-run table, exit codes.

`run` hands a training suite here. `--shard I/N` runs every N-th training unit from the I-th
into its own CSV (`tools/quality_merge.py` joins the parts; `tools/gpu_quality_check.sh` runs
one shard per GPU); `--gpus`, `--executor`, `--shards` and `--profile-stages` are not supported
for training suites yet and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from scfa_bench.cli.common import console, err_console, wide_console
from scfa_bench.constants import DEVICES
from scfa_bench.errors import EXIT_FAILURE, EXIT_INTERRUPTED, InputError


def is_training_suite(suite_file: Path) -> bool:
    """Whether the YAML file has a `training` section (bad YAML raises InputError)."""
    from scfa_bench.suite.yaml_load import load_yaml

    data = load_yaml(suite_file).data
    return isinstance(data, dict) and "training" in data


def training_run(suite_file: Path, options: dict[str, Any]) -> bool:
    """`run`'s dispatch: run `suite_file` here if it is a training suite (False if it is not).
    `options` are `run`'s arguments by name."""
    if not is_training_suite(suite_file):
        return False
    o = options
    given = {"--gpus": o["gpus"], "--shards": o["shards"]}
    unsupported = {k: v is not None for k, v in given.items()}
    unsupported |= {"--executor": o["executor"] != "local", "--profile-stages": o["profile_stages"]}
    run_training_command(
        suite_file,
        out=o["out"],
        resume=o["resume"],
        device=o["device"],
        progress=o["progress"],
        dry_run=o["dry_run"],
        force=o["force"],
        unsupported=unsupported,
        shard=o["shard"],
    )
    return True


def training_validated(path: Path, suite: Any) -> str:
    """`validate`'s line for a training suite, once its corpus has loaded and is long enough
    for every seq_len (InputError naming the key otherwise)."""
    from scfa_bench.run.training import load_corpus_checked

    t = suite.training
    load_corpus_checked(t)
    runs = len(t.settings) * len(t.data_names()) * len(t.seq_len) * len(t.seeds)
    return f"ok: {path} (training suite {suite.name}: {runs} training runs)"


def _plan_table(suite: Any) -> Table:
    training = suite.training
    table = Table(title=f"suite {suite.name}: training units")
    for column in ("setting", "data", "seq_len", "steps", "seeds"):
        table.add_column(column)
    for data in training.data_names():
        for seq_len in training.seq_len:
            for setting in training.settings:
                seeds = ", ".join(map(str, training.seeds))
                steps = str(training.steps_for(seq_len))
                table.add_row(setting.label(), data, str(seq_len), steps, seeds)
    return table


def final_rows_table(rows: list[Any]) -> Table:
    """The last row of each unit: where it got to and how good it is."""
    last: dict[tuple[str, str, int, int], Any] = {}
    for row in rows:
        last[row.unit()] = row
    table = Table(title="training: last evaluation per setting and seed")
    columns = (
        "setting",
        "task",
        "T",
        "seed",
        "step",
        "val_loss",
        "bpb",
        "acc",
        "train_s",
        "status",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("setting", "task", "status") else "right"
        )
    fmt = lambda v, f: "" if v is None else format(v, f)
    for row in last.values():
        table.add_row(
            row.setting, row.task, str(row.seq_len), str(row.seed), str(row.step),
            fmt(row.val_loss, ".4f"), fmt(row.val_bpb, ".4f"), fmt(row.val_accuracy, ".3f"),
            fmt(row.train_seconds, ".1f"), row.status,
        )  # fmt: skip
    return table


def run_training_command(
    suite_file: Path,
    *,
    out: Path,
    resume: Path | None,
    device: str | None,
    progress: bool,
    dry_run: bool,
    force: bool,
    unsupported: dict[str, bool],
    shard: str | None = None,
) -> None:
    """`scfa-bench run` of a training suite. `unsupported`: option -> whether it was given."""
    from scfa_bench.run.loop import RunOptions
    from scfa_bench.run.progress import RichReporter, SilentReporter
    from scfa_bench.run.training import run_training
    from scfa_bench.suite.parse import load_suite

    given = [name for name, used in unsupported.items() if used]
    if given:
        raise InputError(
            f"{', '.join(given)}: not supported for training suites yet; run {suite_file} "
            "without it (one process, one device)"
        )
    if device is not None and device not in DEVICES:
        raise InputError(f"--device: expected one of {', '.join(DEVICES)}; got {device!r}")
    from scfa_bench.run.sharded.plan import parse_shard

    shard_of = None if shard is None else parse_shard(shard)
    suite = load_suite(suite_file)
    if dry_run:
        wide_console().print(_plan_table(suite))
        return
    echo = lambda message: err_console.print(message, highlight=False, soft_wrap=True)
    reporter = RichReporter(console, suite.name) if progress else SilentReporter(echo)
    options = RunOptions(
        out_dir=out, resume=resume, device=device, argv=tuple(sys.argv), force=force
    )
    outcome = run_training(suite, options, reporter, shard_of)
    wide_console().print(final_rows_table(outcome.rows))
    counts: dict[str, int] = {}
    for row in outcome.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    console.print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for row in outcome.rows:
        if row.status not in ("ok",):
            where = f"{row.setting} T={row.seq_len} seed={row.seed} step {row.step}"
            console.print(f"  {row.status}: {where}: {row.error}", highlight=False, soft_wrap=True)
    console.print(f"results: {outcome.csv_path}\nmeta:    {outcome.meta_path}", highlight=False)
    if outcome.interrupted:
        err_console.print(f"interrupted; continue with --resume {outcome.csv_path}")
        raise typer.Exit(EXIT_INTERRUPTED)
    if counts.get("error"):
        raise typer.Exit(EXIT_FAILURE)


__all__ = [
    "final_rows_table",
    "is_training_suite",
    "run_training_command",
    "training_run",
    "training_validated",
]

"""The `scfa-bench` command line: a thin Typer app. Each command parses its options, calls one
stage, and maps errors to exit codes (`scfa_bench.errors`): 0 success; 1 a run with `incorrect`
or `error` rows, or a failed `check`; 2 bad input, printed as one line without a traceback;
130 interrupted by Ctrl-C (the CSV keeps every finished row; `--resume` continues it).

Commands: run, validate, list, env (`cli.run_commands`; run's sharded modes and merge:
`cli.shard_commands`); profile (`cli.profile_commands`); plot, report, check
(`cli.analysis_commands`, which import matplotlib only when a figure is drawn).
"""

from __future__ import annotations

import typer

from scfa_bench.cli import analysis_commands, profile_commands, run_commands, shard_commands

# Plain help text (no rich markup): rich would read "[default: ...]" and other bracketed text
# in option help as markup tags and drop it.
app = typer.Typer(
    help="Benchmark Sparse Causal Flash Attention kernels against dense baselines.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def main() -> None:
    """Benchmark Sparse Causal Flash Attention kernels against dense baselines."""
    from scfa_bench.measure.envinfo import use_interpreter_without_cuda

    use_interpreter_without_cuda()


run_commands.register(app)
shard_commands.register(app)
profile_commands.register(app)
analysis_commands.register(app)

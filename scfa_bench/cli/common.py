"""What every command shares: the consoles and the mapping of bad input to exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from scfa_bench.errors import EXIT_BAD_INPUT, InputError, output_error

if TYPE_CHECKING:
    from scfa_bench.suite.schema import Suite

# CI logs are not terminals; rich would wrap tables at 80 columns there.
_LOG_WIDTH = 160

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def reports_input_errors(command: F) -> F:
    """Bad input, or a file that cannot be written (a report folder that is a file, a full
    disk) -> one message on stderr, no traceback, exit 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (InputError, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, InputError):
                exc = output_error(exc.filename or "output", exc)
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


def wide_console() -> Console:
    """A console that does not wrap wide tables when the output is not a terminal."""
    fresh = Console()
    return fresh if fresh.is_terminal else Console(width=_LOG_WIDTH)


def load_suite_reporting(path: Path) -> Suite:
    """Parse a suite (once per command), printing each warning (an unused sweep axis) on
    stderr; its plugins are not imported here (`register_plugins`)."""
    from scfa_bench.suite.parse import load_suite

    warn = lambda message: err_console.print(
        message, style="yellow", highlight=False, soft_wrap=True
    )
    return load_suite(path, warn=warn)


def register_plugins(suite: Suite, allow: bool) -> None:
    """Import and register the suite's plugins right before measuring; InputError naming
    each one unless `allow` (`--allow-plugins`)."""
    from scfa_bench.suite.consent import register_suite_plugins

    register_suite_plugins(suite, allow=allow)


def confirm_cpu_time(request: Any, suite: Suite, tasks: list[Any], workers: int = 1) -> None:
    """On the CPU, a run predicted past `--max-cpu-minutes` starts only with `--yes` or the
    user's answer at a terminal; otherwise InputError (exit 2) with the estimate."""
    from scfa_bench.measure.envinfo import resolve_device
    from scfa_bench.run.estimate import check_cpu_budget, cpu_seconds

    if request.yes or resolve_device(request.device or suite.device) != "cpu":
        return
    seconds = cpu_seconds(suite, tasks)
    confirm = (lambda text: typer.confirm(text, err=True)) if sys.stdin.isatty() else None
    check_cpu_budget(
        None if seconds is None else seconds / max(workers, 1),
        request.max_cpu_minutes,
        yes=request.yes,
        confirm=confirm,
    )


def print_outcome_rows(rows: list[Any], baseline: str) -> Any:
    """The summary table, the status counts, and one line per (status, impl, reason)."""
    from scfa_bench.analysis.summary import status_counts, summary_table

    table = summary_table(rows, baseline)
    if table is not None:
        console.print(table)
    counts = status_counts(rows)
    console.print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    # One line per (status, implementation, reason): 162 identical `unavailable` lines help no one.
    failed: dict[tuple[str, str, str], list[Any]] = {}
    for row in rows:
        if row.status != "ok":
            failed.setdefault((row.status, row.impl, row.error), []).append(row)
    for (status, impl, error), group in failed.items():
        where = f"T={group[0].seq_len} {group[0].mode}" if len(group) == 1 else f"{len(group)} rows"
        console.print(f"  {status}: {impl} {where}: {error}", highlight=False, soft_wrap=True)
    return counts

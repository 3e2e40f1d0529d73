"""What every command shares: the consoles and the mapping of bad input to exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from scfa_bench.errors import EXIT_BAD_INPUT, InputError, output_error

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

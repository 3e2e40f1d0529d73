"""The one error type for bad input, and every exit code of the `scfa-bench` command."""

from __future__ import annotations

EXIT_OK = 0
# `run`: some row is `incorrect` or `error`; `check`: a regression or lost correctness.
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class InputError(Exception):
    """Bad input from the user: a file, a suite, an option. The CLI prints it and exits 2."""


class OutputError(InputError):
    """A results or meta file cannot be written (read-only folder, full disk, no permission).

    Exit 2 like bad input: the run cannot go on, and the fix is on the user's side.
    """


def output_error(path: object, exc: OSError) -> OutputError:
    """One line naming the file and the system's reason ('No space left on device')."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"{path}: cannot write ({reason})")

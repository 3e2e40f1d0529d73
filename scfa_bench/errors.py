"""The one error type for bad input, and every exit code of the `scfa-bench` command."""

from __future__ import annotations

EXIT_OK = 0
# `run`: some row is `incorrect` or `error`; `check`: a regression or lost correctness.
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class InputError(Exception):
    """Bad input from the user: a file, a suite, an option. The CLI prints it and exits 2."""

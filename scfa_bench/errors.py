"""Exceptions the CLI turns into exit codes (2 = bad input)."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the user: a file, a suite, an option. The CLI prints it and exits 2."""

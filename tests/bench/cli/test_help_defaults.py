"""`--help` of every command shows every option's default, and no bracketed text of an option's
help is lost (rich markup reads "[default: ...]" as a tag and drops it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import Enum
from typing import Any

import typer
from typer.testing import CliRunner

from scfa_bench.cli import app


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's path below `group` (Typer's click groups have `commands`)."""
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            yield from _commands(command, (*path, name))
    else:
        yield path


def _expected_default(param: Any) -> list[str]:
    """The texts the help must show for `param`'s default (none for a plain off flag)."""
    default = param.default
    if default is None or callable(default):
        return []
    if getattr(param, "is_bool_flag", False):
        if param.secondary_opts:  # --x/--no-x: the default is named by its flag
            flag = param.opts[0] if default else param.secondary_opts[0]
            return [flag.lstrip("-")]
        return [] if default is False else [str(default)]  # a plain flag is off unless given
    values = default if isinstance(default, list | tuple) else [default]
    return [str(v.value if isinstance(v, Enum) else v) for v in values]


def _help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    # Compared without whitespace and table borders: help wraps lines, also inside
    # hyphenated words (--no-allow-wall-clock).
    return _squash(result.output.replace("│", " "))


def _squash(text: str) -> str:
    return "".join(text.split())


def test_every_option_shows_its_default_and_bracketed_help() -> None:
    root: Any = typer.main.get_command(app)
    paths = list(_commands(root))
    assert {("run",), ("check",), ("profile",), ("plot",), ("report",)} <= set(paths)
    missing: list[str] = []
    checked = 0
    for path in paths:
        shown = _help_text(path)
        command = root
        for name in path:
            command = command.commands[name]
        for param in command.params:
            name = f"{' '.join(path)} {param.name}"
            for text in _expected_default(param):
                checked += 1
                if _squash(f"[default: {text}]") not in shown:
                    missing.append(f"{name}: default {text!r}")
            for bracketed in re.findall(r"\[[^\]]*\]", getattr(param, "help", None) or ""):
                checked += 1
                if _squash(bracketed) not in shown:
                    missing.append(f"{name}: {bracketed!r}")
    assert checked > 10  # the walk reached the options
    assert not missing, missing

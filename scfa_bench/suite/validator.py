"""Walking parsed YAML with errors that name the file, the key path and its line."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scfa_bench.errors import InputError


class Validator:
    """Walks the parsed YAML; every error names the file, key path and line."""

    def __init__(self, file: str, lines: Mapping[str, int]) -> None:
        self.file = file
        self.lines = lines

    def fail(self, path: str, message: str) -> InputError:
        line = self.lines.get(path)
        where = f"{self.file}: {path}" + (f" (line {line})" if line else "")
        return InputError(f"{where}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...]):
        if not isinstance(value, dict):
            raise self.fail(path or "<top level>", f"expected a mapping, got {show(value)}")
        for key in value:
            if key not in allowed:
                sub = f"{path}.{key}" if path else str(key)
                raise self.fail(sub, f"unknown key; expected one of: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                raise self.fail(path or "<top level>", f"missing required key {key!r}")
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {show(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: str, low: float, high: float, high_open: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise self.fail(path, f"expected a number, got {show(value)}")
        if value < low or value > high or (high_open and value == high):
            interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
            raise self.fail(path, f"expected a number in {interval}, got {value}")
        return float(value)

    def string(self, value: Any, path: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {show(value)}")
        if choices is not None and value not in choices:
            raise self.fail(path, f"expected one of {', '.join(choices)}; got {value!r}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {show(value)}")
        return value

    def seq(self, value: Any, path: str, item, **kwargs) -> tuple:
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a non-empty list, got {show(value)}")
        items = tuple(item(v, f"{path}[{i}]", **kwargs) for i, v in enumerate(value))
        for i, v in enumerate(items):
            if v in items[:i]:
                raise self.fail(f"{path}[{i}]", f"duplicate value {v!r}")
        return items


def show(value: Any) -> str:
    text = "nothing (null)" if value is None else f"{type(value).__name__} {value!r}"
    return text if len(text) < 80 else text[:77] + "..."

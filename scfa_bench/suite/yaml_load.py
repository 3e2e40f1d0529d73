"""Read a suite file's YAML safely: bounded size, no anchors or aliases, no duplicate keys.

PyYAML's `safe_load` accepts duplicate keys (the last one silently wins) and expands aliases
without bound (a "billion laughs" file of a few hundred bytes grows to gigabytes). A suite
never needs either, so both are rejected before anything is constructed; errors name the file
and the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scfa_bench.errors import InputError

# A suite is a few hundred bytes; anything near this is not a suite.
MAX_SUITE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LoadedYaml:
    data: Any
    lines: dict[str, int]  # 1-based line of every key path ("sweep.seq_len[2]")
    raw: bytes


def read_suite_bytes(file: Path) -> bytes:
    """The file's bytes; InputError when unreadable or larger than MAX_SUITE_BYTES."""
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_SUITE_BYTES + 1)  # bounded even for /dev/zero or a FIFO
    except OSError as exc:
        raise InputError(f"{file}: cannot read suite file ({exc.strerror or exc})") from None
    if len(raw) > MAX_SUITE_BYTES:
        raise InputError(
            f"{file}: suite file is larger than {MAX_SUITE_BYTES // 1024} KiB; not a suite"
        )
    return raw


def load_yaml(file: Path) -> LoadedYaml:
    """Parse a suite file; InputError for size, syntax, anchors/aliases or duplicate keys."""
    raw = read_suite_bytes(file)
    text = raw.decode("utf-8", errors="replace")
    try:
        _reject_anchors(text, file)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _reject_duplicate_keys(node, file)
        data = yaml.SafeLoader(text).construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = exc.problem or exc.context or "invalid YAML"
        raise InputError(f"{file}: YAML syntax error at {where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: YAML syntax error: {exc}") from None
    return LoadedYaml(data=data, lines=key_lines(node), raw=raw)


def _reject_anchors(text: str, file: Path) -> None:
    """Walk the event stream (aliases are not expanded there, so a bomb costs nothing)."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias" if isinstance(event, yaml.AliasEvent) else "anchor"
            line = event.start_mark.line + 1
            raise InputError(
                f"{file}: line {line}: YAML {kind} {'*' if kind == 'alias' else '&'}"
                f"{event.anchor} is not allowed in suite files (write the value out)"
            )


def _reject_duplicate_keys(node: yaml.Node | None, file: Path, path: str = "") -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise InputError(
                    f"{file}: {sub} (line {line}): duplicate key {key!r}, "
                    f"first given on line {seen[key]}"
                )
            seen[key] = line
            _reject_duplicate_keys(value_node, file, sub)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_duplicate_keys(item, file, f"{path}[{i}]")


def key_lines(node: yaml.Node | None, path: str = "") -> dict[str, int]:
    """1-based line of every key path in a composed YAML tree (for error messages)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = f"{path}.{key_node.value}" if path else str(key_node.value)
            lines[sub] = key_node.start_mark.line + 1
            lines.update(key_lines(value_node, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = f"{path}[{i}]"
            lines[sub] = item.start_mark.line + 1
            lines.update(key_lines(item, sub))
    return lines

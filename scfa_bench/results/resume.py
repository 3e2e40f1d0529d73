"""Continue an interrupted run in its own CSV: check the file fits the suite, skip its rows.

A last line cut short by a crash or a full disk is dropped (never appended to, never counted
as done); a suite file whose parsed content changed since the run is refused unless forced,
naming the keys that differ.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from scfa_bench.errors import InputError, output_error
from scfa_bench.results.meta import suite_content
from scfa_bench.results.reader import Results, read_results
from scfa_bench.results.row import COLUMNS, RowKey
from scfa_bench.suite.grid import Task
from scfa_bench.suite.schema import Suite

_SHOWN_CHARS = 60


def read_for_resume(csv_path: Path, suite: Suite) -> Results:
    """The CSV to append to, a partly written last line left out (see `drop_partial_row`);
    InputError unless it has our exact header and only this suite."""
    results = read_results(csv_path, with_meta=False, drop_partial_tail=True)
    if results.columns != COLUMNS:
        missing = [c for c in COLUMNS if c not in results.columns]
        raise InputError(
            f"{csv_path}: not a scfa-bench results CSV (columns differ; missing: "
            f"{', '.join(missing) or 'none'}; order or extra columns may differ)"
        )
    other = {r.suite for r in results.rows} - {suite.name}
    if other:
        raise InputError(
            f"{csv_path}: holds rows of suite(s) {', '.join(sorted(other))}; "
            f"it cannot resume suite {suite.name!r}"
        )
    return results


def partial_row_message(results: Results) -> str | None:
    """One line describing the partly written last line, or None when there is none."""
    tail = results.partial_tail
    if not tail:
        return None
    line = (results.lines[-1] + 1) if results.lines else 2
    shown = tail.decode("utf-8", errors="replace")
    shown = shown if len(shown) <= _SHOWN_CHARS else shown[:_SHOWN_CHARS] + "..."
    return (
        f"{results.path}: dropped a partly written last row (line {line}, {len(tail)} bytes: "
        f"{shown!r}); it will be measured again"
    )


def drop_partial_row(results: Results) -> None:
    """Cut the partly written last line off the file, so new rows start on a line of their own."""
    if not results.partial_tail:
        return
    try:
        size = results.path.stat().st_size
        os.truncate(results.path, size - len(results.partial_tail))
    except OSError as exc:
        raise output_error(results.path, exc) from None


def suite_changes(meta: dict[str, Any], suite: Suite) -> list[str]:
    """'key: old -> new' for every top-level suite key whose value changed since the run."""
    old = meta.get("suite")
    if not isinstance(old, dict):
        return ["(the run's meta does not record the suite's content)"]
    new = suite_content(suite)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def check_suite_unchanged(meta: dict[str, Any], suite: Suite, csv_path: Path, force: bool) -> str:
    """'' when the suite is the one the run started with; with `force`, a note naming what
    changed; otherwise InputError naming it. A file whose bytes changed but whose values did
    not (comments, layout) passes with a note."""
    old_hash = meta.get("suite_sha256")
    if not old_hash or old_hash == suite.sha256:
        return ""
    changes = suite_changes(meta, suite)
    if not changes:
        return f"{suite.source}: changed since the run in comments or layout only; resuming"
    what = "; ".join(changes)
    if force:
        return f"{suite.source}: changed since the run ({what}); resuming anyway (--force)"
    raise InputError(
        f"{suite.source}: changed since {csv_path} was started ({what}); rows of both would "
        "mix in one file. Start a new run, or pass --force to resume anyway"
    )


def done_keys(results: Results) -> set[RowKey]:
    """Keys of every row already in the file, whatever its status."""
    return {r.key for r in results.rows}


def pending_tasks(tasks: list[Task], suite: Suite, done: set[RowKey]) -> list[Task]:
    """Tasks restricted to the modes whose rows are not in `done`; fully done tasks dropped."""
    result = []
    for task in tasks:
        modes = tuple(m for m in task.modes if RowKey.for_task(suite, task, m) not in done)
        if modes:
            result.append(replace(task, modes=modes))
    return result

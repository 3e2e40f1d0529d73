"""Continue an interrupted run in its own CSV: check the file fits the suite, skip its rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from scfa_bench.errors import InputError
from scfa_bench.results.reader import Results, read_results
from scfa_bench.results.row import COLUMNS, RowKey
from scfa_bench.suite.grid import Task
from scfa_bench.suite.schema import Suite


def read_for_resume(csv_path: Path, suite: Suite) -> Results:
    """The CSV to append to; InputError unless it has our exact header and only this suite."""
    results = read_results(csv_path, with_meta=False)  # the run loop reads the meta itself
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

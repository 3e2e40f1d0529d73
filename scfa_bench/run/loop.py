"""Run a suite: measure every pending task and write one CSV row per mode as soon as it is known.

The rows go to a new `<suite>-<time>.csv` (or, with `resume`, the CSV of an interrupted run),
with speedups over the baseline filled in as soon as the baseline row exists and recomputed over
the whole file at the end. Ctrl-C stops the sweep; the CSV keeps every finished row and the
outcome says `interrupted`. The meta says `state: running` while the run goes and how it ended
afterwards (`complete`, `interrupted`, `failed`); a file that cannot be written stops the run
with an `OutputError` (exit 2), which also says when the meta could not record the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import torch

from scfa_bench.errors import InputError, OutputError, output_error
from scfa_bench.measure.envinfo import environment, resolve_device
from scfa_bench.measure.model_point import measure_model_task
from scfa_bench.measure.point import ModeMeasurement, measure_task
from scfa_bench.measure.telemetry import run_telemetry
from scfa_bench.results.limits import fill_fraction_of_limit
from scfa_bench.results.meta import meta_path_for, new_meta, read_meta, suite_content, write_meta
from scfa_bench.results.reader import read_results
from scfa_bench.results.resume import (
    check_suite_unchanged,
    done_keys,
    drop_partial_row,
    partial_row_message,
    pending_tasks,
    read_for_resume,
)
from scfa_bench.results.row import ResultRow, RowKey, base_row
from scfa_bench.results.speedup import fill_speedups, speedup_for
from scfa_bench.results.writer import ResultWriter, rewrite_rows
from scfa_bench.run.paths import new_csv_path
from scfa_bench.run.progress import Reporter, SilentReporter
from scfa_bench.run.rows import measured_row
from scfa_bench.suite.grid import Task, expand, row_count
from scfa_bench.suite.schema import Suite


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path = Path("results")
    resume: Path | None = None  # a CSV of an earlier run of the same suite: skip its rows
    device: str | None = None  # overrides the suite's device
    argv: tuple[str, ...] = ()
    # Restricts the expanded grid (one shard of it, `run.sharded.plan`); None runs every task.
    select: Callable[[list[Task]], list[Task]] | None = None
    force: bool = False  # resume even though the suite file changed since the run
    profile_stages: bool = False  # also profile every row: stage times in `stage_ms`


@dataclass(frozen=True)
class RunOutcome:
    csv_path: Path
    meta_path: Path
    rows: list[ResultRow]  # every row of the CSV, speedups filled in
    new_rows: int
    interrupted: bool
    notes: tuple[str, ...] = ()  # what resume dropped or accepted, also sent to the reporter


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def run_suite(suite: Suite, options: RunOptions, reporter: Reporter | None = None) -> RunOutcome:
    """Run every pending row of the suite; returns where the results went and what they hold."""
    reporter = reporter or SilentReporter()
    device = resolve_device(options.device or suite.device)
    env = environment(device)
    tasks = expand(suite)
    if options.select is not None:
        tasks = options.select(tasks)
    argv = list(options.argv) if options.argv else list(sys.argv)

    done: set[RowKey] = set()
    notes: list[str] = []
    if options.resume is not None:
        csv_path = options.resume
        existing = read_for_resume(csv_path, suite)
        meta_path = meta_path_for(csv_path)
        try:
            meta = read_meta(meta_path)
        except InputError:  # no meta, or an unreadable one: start a fresh one
            meta = new_meta(suite, env, argv, _now())
        notes.append(check_suite_unchanged(meta, suite, csv_path, options.force))
        notes.append(partial_row_message(existing) or "")
        drop_partial_row(existing)  # after the checks: a refused resume changes nothing
        done = done_keys(existing)
        meta.setdefault("resumed", []).append(
            {"at": _now(), "argv": argv, "suite_sha256": suite.sha256}
        )
        meta.update(
            state="running",
            pid=os.getpid(),
            hostname=env["hostname"],
            finished=None,
            suite_sha256=suite.sha256,
            suite=suite_content(suite),
        )
    else:
        try:
            options.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {options.out_dir}: cannot create folder ({exc})") from None
        csv_path = new_csv_path(options.out_dir, suite.name)
        meta_path = meta_path_for(csv_path)
        meta = new_meta(suite, env, argv, _now())
    notes = [n for n in notes if n]
    for note in notes:
        reporter.note(note)

    todo = pending_tasks(tasks, suite, done)
    write_meta(meta_path, meta)
    try:
        new_rows, interrupted = _measure_all(
            suite, todo, row_count(tasks), device, env, csv_path, reporter, options.profile_stages
        )
        # Rows measured before their baseline, and resumed rows, get their speedup here.
        rows = fill_fraction_of_limit(fill_speedups(read_results(csv_path).rows, suite.baseline))
        rewrite_rows(csv_path, rows)
        meta["telemetry"] = run_telemetry(rows, device)
    except KeyboardInterrupt:
        _finish(meta_path, meta, "interrupted")
        raise
    except BaseException as exc:
        unwritten = _finish(meta_path, meta, "failed", f"{type(exc).__name__}: {exc}")
        if unwritten and isinstance(exc, InputError):
            exc.args = (f"{exc}; {unwritten}",)  # the CLI prints it: one line, exit 2
        elif unwritten:
            exc.add_note(unwritten)
        raise
    _finish(meta_path, meta, "interrupted" if interrupted else "complete")
    return RunOutcome(csv_path, meta_path, rows, new_rows, interrupted, tuple(notes))


def _measure_all(
    suite: Suite,
    todo: list[Task],
    total_rows: int,
    device: str,
    env: dict[str, Any],
    csv_path: Path,
    reporter: Reporter,
    profile_stages: bool = False,
) -> tuple[int, bool]:
    """Measure the pending tasks, appending each row; (rows written, interrupted by Ctrl-C)."""
    measure: Callable[[Suite, Task, str], Iterator[ModeMeasurement]] = (
        partial(measure_task, with_stages=profile_stages)
        if suite.model is None
        else measure_model_task
    )
    baseline_rows: list[ResultRow] = []
    new_rows = 0
    interrupted = False
    with ResultWriter(csv_path) as writer:
        reporter.start(total_rows, total_rows - row_count(todo))
        try:
            for task in todo:
                reporter.task(f"{task.impl} {task.point.label()}")
                since = time.perf_counter()
                for measured in measure(suite, task, device):
                    base = base_row(suite, task, measured.mode, env["device_name"])
                    now = time.perf_counter()
                    row = replace(measured_row(base, measured), wall_s=round(now - since, 3))
                    since = now
                    if suite.baseline:
                        row = replace(row, speedup=speedup_for(row, baseline_rows))
                        if row.impl == suite.baseline:
                            baseline_rows.append(row)
                    try:
                        writer.write(row)
                    except OSError as exc:
                        raise output_error(csv_path, exc) from None
                    new_rows += 1
                    reporter.advance(1)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # each shape starts from a clean cache
        except KeyboardInterrupt:
            interrupted = True
        finally:
            reporter.stop()
    return new_rows, interrupted


def _finish(meta_path: Path, meta: dict[str, Any], state: str, error: str = "") -> str:
    """Record how the run ended. When the meta cannot be written (full disk, read-only
    folder): OutputError naming it, or, when the run already failed, the sentence to add to
    that failure ('' when written)."""
    meta.update(state=state, finished=_now(), interrupted=state == "interrupted")
    if error:
        meta["error"] = error[:500]
    try:
        write_meta(meta_path, meta)
    except (InputError, OSError) as exc:
        reason = exc if isinstance(exc, InputError) else output_error(meta_path, exc)
        unwritten = f"the meta was not written ({reason}): it still says state `running`"
        if state == "failed":
            return unwritten
        raise OutputError(f"the run ended {state}, but {unwritten}") from None
    return ""

"""Run a suite: measure every pending task and write one CSV row per mode as soon as it is known.

The rows go to a new `<suite>-<time>.csv` (or, with `resume`, the CSV of an interrupted run),
with speedups over the baseline filled in as soon as the baseline row exists and recomputed over
the whole file at the end. Ctrl-C stops the sweep; the CSV keeps every finished row and the
outcome says `interrupted`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from scfa_bench.errors import InputError
from scfa_bench.measure.envinfo import environment, resolve_device
from scfa_bench.measure.point import ModeMeasurement, measure_task
from scfa_bench.measure.stages import stage_cell
from scfa_bench.measure.telemetry import TelemetrySummary, run_telemetry
from scfa_bench.results.limits import fill_fraction_of_limit
from scfa_bench.results.meta import meta_path_for, new_meta, read_meta, write_meta
from scfa_bench.results.reader import read_results
from scfa_bench.results.resume import done_keys, pending_tasks, read_for_resume
from scfa_bench.results.row import ResultRow, RowKey, base_row
from scfa_bench.results.speedup import fill_speedups, speedup_for
from scfa_bench.results.writer import ResultWriter, rewrite_rows
from scfa_bench.run.progress import Reporter, SilentReporter
from scfa_bench.suite.grid import expand, row_count
from scfa_bench.suite.schema import Suite


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path = Path("results")
    resume: Path | None = None  # a CSV of an earlier run of the same suite: skip its rows
    device: str | None = None  # overrides the suite's device
    argv: tuple[str, ...] = ()
    profile_stages: bool = False  # also profile every row: stage times in `stage_ms`


@dataclass(frozen=True)
class RunOutcome:
    csv_path: Path
    meta_path: Path
    rows: list[ResultRow]  # every row of the CSV, speedups filled in
    new_rows: int
    interrupted: bool


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def new_csv_path(out_dir: Path, suite_name: str) -> Path:
    """results/<suite>-<YYYYmmdd-HHMMSS>.csv, with a counter if that name is taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"{suite_name}-{stamp}.csv"
    counter = 1
    while path.exists():
        path = out_dir / f"{suite_name}-{stamp}-{counter}.csv"
        counter += 1
    return path


def measured_row(base: ResultRow, measured: ModeMeasurement) -> ResultRow:
    """The CSV row of one measured mode."""
    timing = measured.timing
    return replace(
        base,
        status=measured.status,
        error=measured.error,
        density=measured.density,
        check_rel_err=measured.check_rel_err,
        ms_median=None if timing is None else timing.ms_median,
        ms_q20=None if timing is None else timing.ms_q20,
        ms_q80=None if timing is None else timing.ms_q80,
        timer="" if timing is None else timing.timer,
        tflops_dense_equiv=measured.tflops_dense_equiv,
        tflops_effective=measured.tflops_effective,
        peak_mem_mib=measured.peak_mem_mib,
        nvml_mem_mib=measured.nvml_mem_mib,
        impl_kind=measured.impl_kind,
        approx_rel_err=measured.approx_rel_err,
        **telemetry_cells(measured.telemetry),
        stage_ms="" if measured.stages is None else stage_cell(measured.stages),
        gpu_idle_ms=None if measured.stages is None else measured.stages.idle.idle_us / 1000,
    )


def telemetry_cells(summary: TelemetrySummary | None) -> dict[str, object]:
    """The telemetry columns of a row; blank without a summary or samples."""
    if summary is None or not summary.samples:
        return {}
    throttled = {True: "yes", False: "no", None: ""}[summary.throttled]
    return {
        "sm_mhz_min": summary.sm_mhz_min,
        "sm_mhz_median": summary.sm_mhz_median,
        "mem_mhz_median": summary.mem_mhz_median,
        "temp_c_max": summary.temp_c_max,
        "power_w_max": summary.power_w_max,
        "throttle_reasons": "|".join(summary.reasons),
        "throttled": throttled,
    }


def run_suite(suite: Suite, options: RunOptions, reporter: Reporter | None = None) -> RunOutcome:
    """Run every pending row of the suite; returns where the results went and what they hold."""
    reporter = reporter or SilentReporter()
    device = resolve_device(options.device or suite.device)
    env = environment(device)
    tasks = expand(suite)
    argv = list(options.argv) if options.argv else list(sys.argv)

    done: set[RowKey] = set()
    if options.resume is not None:
        csv_path = options.resume
        done = done_keys(read_for_resume(csv_path, suite))
        meta_path = meta_path_for(csv_path)
        try:
            meta = read_meta(meta_path)
        except InputError:  # no meta, or an unreadable one: start a fresh one
            meta = new_meta(suite, env, argv, _now())
        meta.setdefault("resumed", []).append(_now())
    else:
        try:
            options.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {options.out_dir}: cannot create folder ({exc})") from None
        csv_path = new_csv_path(options.out_dir, suite.name)
        meta_path = meta_path_for(csv_path)
        meta = new_meta(suite, env, argv, _now())

    todo = pending_tasks(tasks, suite, done)
    total_rows = row_count(tasks)
    baseline_rows: list[ResultRow] = []
    new_rows = 0
    interrupted = False
    write_meta(meta_path, meta)

    with ResultWriter(csv_path) as writer:
        reporter.start(total_rows, total_rows - row_count(todo))
        try:
            for task in todo:
                reporter.task(f"{task.impl} {task.point.label()}")
                measured_modes = measure_task(
                    suite, task, device, with_stages=options.profile_stages
                )
                for measured in measured_modes:
                    base = base_row(suite, task, measured.mode, env["device_name"])
                    row = measured_row(base, measured)
                    if suite.baseline:
                        row = replace(row, speedup=speedup_for(row, baseline_rows))
                        if row.impl == suite.baseline:
                            baseline_rows.append(row)
                    writer.write(row)
                    new_rows += 1
                    reporter.advance(1)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # each shape starts from a clean cache
        except KeyboardInterrupt:
            interrupted = True
        finally:
            reporter.stop()

    # Rows measured before their baseline, and resumed rows, get their speedup here.
    rows = fill_fraction_of_limit(fill_speedups(read_results(csv_path).rows, suite.baseline))
    rewrite_rows(csv_path, rows)
    meta["telemetry"] = run_telemetry(rows, device)
    meta["finished"] = _now()
    meta["interrupted"] = interrupted
    write_meta(meta_path, meta)
    return RunOutcome(csv_path, meta_path, rows, new_rows, interrupted)

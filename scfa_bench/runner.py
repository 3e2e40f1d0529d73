"""Run a suite: for each task (implementation x point) make inputs, check, then time and measure
every mode, writing one CSV row per mode as soon as it is known.

Failure handling per point: out of memory -> `oom` (cache freed, sweep goes on); any other
exception -> `error` with its message; a backend the machine lacks -> `unavailable`; a failed
check -> `incorrect` (not timed). Ctrl-C stops the sweep; the CSV keeps every finished row and
the outcome says `interrupted`.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from scfa_bench import __version__
from scfa_bench.correctness import check_against_reference, sample_rows
from scfa_bench.envinfo import environment, resolve_device
from scfa_bench.errors import InputError
from scfa_bench.grid import Task, expand
from scfa_bench.inputs import AttentionInputs, make_inputs, output_grad
from scfa_bench.memory import nvml_used_mib, peak_allocated_mib
from scfa_bench.metrics import dense_causal_flops, density, tflops
from scfa_bench.registry import ImplUnavailable, get_spec
from scfa_bench.results import (
    ResultRow,
    ResultWriter,
    done_keys,
    meta_path_for,
    read_meta,
    read_rows,
    rewrite_with_speedups,
    row_cells,
    row_key,
    with_speedup,
    write_meta,
)
from scfa_bench.suite import Suite
from scfa_bench.timing import time_call

_MAX_ERROR_CHARS = 500


class Reporter(Protocol):
    """Progress callbacks (the CLI shows a rich progress bar)."""

    def start(self, total_rows: int, done_rows: int) -> None: ...
    def task(self, label: str) -> None: ...
    def advance(self, rows: int) -> None: ...
    def stop(self) -> None: ...


class SilentReporter:
    def start(self, total_rows: int, done_rows: int) -> None:
        pass

    def task(self, label: str) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path = Path("results")
    resume: Path | None = None  # a CSV of an earlier run of the same suite: skip its rows
    device: str | None = None  # overrides the suite's device
    argv: tuple[str, ...] = ()
    # Restricts the expanded grid (a shard of it); None runs every task.
    select: Callable[[list[Task]], list[Task]] | None = None


@dataclass(frozen=True)
class RunOutcome:
    csv_path: Path
    meta_path: Path
    rows: list[ResultRow]  # every row of the CSV, speedups filled in
    new_rows: int
    interrupted: bool


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _free_memory() -> None:
    """After an OOM: drop dead tensors and give the cache back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _TaskRunner:
    """Measures one task; `emit` receives each row as soon as it is final."""

    def __init__(self, suite: Suite, device: str, device_name: str) -> None:
        self.suite = suite
        self.device = device
        self.device_name = device_name

    def base_row(self, task: Task, mode: str) -> ResultRow:
        s = self.suite
        return ResultRow(
            suite=s.name,
            impl=task.impl,
            mode=mode,
            batch=s.shape.batch,
            heads=s.shape.heads,
            head_dim=s.shape.head_dim,
            seq_len=task.point.seq_len,
            n_buckets=task.point.n_buckets,
            drop_rate=task.point.drop_rate,
            dtype=s.shape.dtype,
            baseline=s.baseline or "",
            warmup_ms=s.timing.warmup_ms,
            rep_ms=s.timing.rep_ms,
            device=self.device_name,
        )

    def run(self, task: Task, modes: tuple[str, ...], emit: Callable[[ResultRow], None]) -> None:
        spec = get_spec(task.impl)

        def emit_all(status: str, error: str, **extra: object) -> None:
            for mode in modes:
                emit(replace(self.base_row(task, mode), status=status, error=error, **extra))

        if self.device not in spec.devices:
            emit_all("unavailable", f"{spec.name} is not registered for device {self.device}")
            return
        impl = spec.create()
        ok, reason = impl.available(self.device)
        if not ok:
            emit_all("unavailable", reason)
            return

        inputs: AttentionInputs | None = None
        try:
            needs_grad = spec.has_backward and any(m != "fwd" for m in modes)
            inputs = make_inputs(
                self.suite.shape,
                task.point,
                seed=self.suite.seed,
                device=self.device,
                buckets=self.suite.buckets,
                requires_grad=needs_grad,
            )
            pattern_density = density(
                q_hash=inputs.q_hash,
                k_hash=inputs.k_hash,
                q_keep=inputs.q_keep,
                k_keep=inputs.k_keep,
            )
            forward = impl.prepare(inputs)
            check_err = None
            if self._should_check(task):
                result = check_against_reference(
                    forward,
                    inputs,
                    dtype=self.suite.shape.dtype,
                    rows=sample_rows(
                        task.point.seq_len, self.suite.check_rows, seed=self.suite.seed
                    ),
                    with_grads=needs_grad,
                    seed=self.suite.seed,
                )
                check_err = result.rel_err
                if not result.passed:
                    emit_all(
                        "incorrect", result.detail, density=pattern_density, check_rel_err=check_err
                    )
                    return
        except ImplUnavailable as exc:
            emit_all("unavailable", str(exc))
            return
        except torch.OutOfMemoryError as exc:
            inputs = None
            _free_memory()
            emit_all("oom", _short(exc))
            return
        except Exception as exc:
            emit_all("error", _short(exc))
            return

        for mode in modes:
            row = replace(
                self.base_row(task, mode), density=pattern_density, check_rel_err=check_err
            )
            if mode != "fwd" and not spec.has_backward:
                emit(replace(row, status="unavailable", error=f"{spec.name} has no backward"))
                continue
            try:
                emit(self._measure_mode(row, mode, forward, inputs, pattern_density))
            except torch.OutOfMemoryError as exc:
                _free_memory()
                emit(replace(row, status="oom", error=_short(exc)))
            except Exception as exc:
                emit(replace(row, status="error", error=_short(exc)))
            finally:
                for x in inputs.leaves:
                    x.grad = None

    def _should_check(self, task: Task) -> bool:
        limit = self.suite.max_check_seq_len
        return self.suite.check and (limit is None or task.point.seq_len <= limit)

    def _measure_mode(
        self,
        row: ResultRow,
        mode: str,
        forward: Callable[[], Tensor],
        inputs: AttentionInputs,
        pattern_density: float,
    ) -> ResultRow:
        grad_to_none: list[Tensor] | None = None
        if mode == "fwd":

            def step() -> object:
                with torch.no_grad():
                    return forward()

        else:
            out = forward()
            do = output_grad(out, seed=self.suite.seed)
            grad_to_none = inputs.leaves
            if mode == "bwd":
                # The forward ran once above; only the backward is timed.
                step = lambda: out.backward(do, retain_graph=True)
            else:
                del out
                step = lambda: forward().backward(do)

        timings = time_call(
            step,
            device=self.device,
            warmup_ms=self.suite.timing.warmup_ms,
            rep_ms=self.suite.timing.rep_ms,
            grad_to_none=grad_to_none,
        )
        for x in grad_to_none or ():
            x.grad = None
        peak = peak_allocated_mib(step, self.device)
        nvml = nvml_used_mib() if self.device == "cuda" else None
        s = self.suite.shape
        dense_tflops = tflops(
            dense_causal_flops(s.batch, s.heads, row.seq_len, s.head_dim, mode), timings.ms_median
        )
        return replace(
            row,
            ms_median=timings.ms_median,
            ms_q20=timings.ms_q20,
            ms_q80=timings.ms_q80,
            tflops_dense_equiv=dense_tflops,
            tflops_effective=None if dense_tflops is None else dense_tflops * pattern_density,
            peak_mem_mib=peak,
            nvml_mem_mib=nvml,
            status="ok",
            timer=timings.timer,
        )


def new_csv_path(out_dir: Path, suite_name: str) -> Path:
    """results/<suite>-<YYYYmmdd-HHMMSS>.csv, with a counter if that name is taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"{suite_name}-{stamp}.csv"
    counter = 1
    while path.exists():
        path = out_dir / f"{suite_name}-{stamp}-{counter}.csv"
        counter += 1
    return path


def _meta(suite: Suite, env: dict, options: RunOptions, started: str) -> dict:
    return {
        "suite_name": suite.name,
        "suite_file": suite.source,
        "suite_sha256": suite.sha256,
        "device_name": env["device_name"],
        "driver": env["driver"],
        "cuda": env["cuda"],
        "torch": env["torch"],
        "triton": env["triton"],
        "python": env["python"],
        "platform": env["platform"],
        "git_rev": env["git_rev"],
        "hostname": env["hostname"],
        "timing": {"warmup_ms": suite.timing.warmup_ms, "rep_ms": suite.timing.rep_ms},
        "shape": {
            "batch": suite.shape.batch,
            "heads": suite.shape.heads,
            "head_dim": suite.shape.head_dim,
            "dtype": suite.shape.dtype,
        },
        "baseline": suite.baseline or "",
        "started": started,
        "finished": None,
        "argv": list(options.argv) if options.argv else list(sys.argv),
        "scfa_bench_version": __version__,
        "device": env["device"],
        "nvml": env["nvml"],
        "clocks": env["clocks"],
        "buckets": suite.buckets,
        "seed": suite.seed,
        "check": {
            "enabled": suite.check,
            "check_rows": suite.check_rows,
            "max_check_seq_len": suite.max_check_seq_len,
        },
        "interrupted": False,
        "resumed": [],
    }


def pending_tasks(tasks: list[Task], suite: Suite, done: set[tuple[str, ...]]) -> list[Task]:
    """Tasks restricted to the modes whose rows are not in `done`; fully done tasks dropped."""
    runner = _TaskRunner(suite, device="", device_name="")
    result = []
    for task in tasks:
        modes = tuple(
            m for m in task.modes if row_key(row_cells(runner.base_row(task, m))) not in done
        )
        if modes:
            result.append(replace(task, modes=modes))
    return result


def run_suite(suite: Suite, options: RunOptions, reporter: Reporter | None = None) -> RunOutcome:
    """Run every pending row of the suite; returns where the results went and what they hold."""
    reporter = reporter or SilentReporter()
    device = resolve_device(options.device or suite.device)
    env = environment(device)
    tasks = expand(suite)
    if options.select is not None:
        tasks = options.select(tasks)

    done: set[tuple[str, ...]] = set()
    if options.resume is not None:
        csv_path = options.resume
        previous = read_rows(csv_path)
        other = {r.suite for r in previous} - {suite.name}
        if other:
            raise InputError(
                f"{csv_path}: holds rows of suite(s) {', '.join(sorted(other))}; "
                f"it cannot resume suite {suite.name!r}"
            )
        done = done_keys(previous)
        meta_path = meta_path_for(csv_path)
        meta = read_meta(meta_path) or _meta(suite, env, options, _now())
        meta.setdefault("resumed", []).append(_now())
    else:
        try:
            options.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {options.out_dir}: cannot create folder ({exc})") from None
        csv_path = new_csv_path(options.out_dir, suite.name)
        meta_path = meta_path_for(csv_path)
        meta = _meta(suite, env, options, _now())

    todo = pending_tasks(tasks, suite, done)
    total_rows = sum(len(t.modes) for t in tasks)
    runner = _TaskRunner(suite, device, env["device_name"])
    written: list[ResultRow] = []
    baseline_rows: list[ResultRow] = []
    interrupted = False
    write_meta(meta_path, meta)

    with ResultWriter(csv_path) as writer:

        def emit(row: ResultRow) -> None:
            if suite.baseline:
                row = with_speedup(row, baseline_rows)
                if row.impl == suite.baseline:
                    baseline_rows.append(row)
            writer.write(row)
            written.append(row)
            reporter.advance(1)

        reporter.start(total_rows, total_rows - sum(len(t.modes) for t in todo))
        try:
            for task in todo:
                reporter.task(f"{task.impl} {task.point.label()}")
                runner.run(task, task.modes, emit)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # each shape starts from a clean cache
        except KeyboardInterrupt:
            interrupted = True
        finally:
            reporter.stop()

    rows = rewrite_with_speedups(csv_path, suite.baseline or "")
    meta["finished"] = _now()
    meta["interrupted"] = interrupted
    write_meta(meta_path, meta)
    return RunOutcome(csv_path, meta_path, rows, len(written), interrupted)

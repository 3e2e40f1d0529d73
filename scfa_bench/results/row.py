"""A result row, its CSV columns and cells, and the key that identifies it.

One row per (implementation, point, mode). Empty cells mean "does not apply / not measured".
Every stage that reads or writes rows (the run loop, resume, summary, plots, report, gate) uses
`ResultRow` and `RowKey` from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from scfa_bench.suite.grid import Task
from scfa_bench.suite.schema import Suite


@dataclass(frozen=True)
class ResultRow:
    """One CSV line; field order is the column order."""

    suite: str
    impl: str
    mode: str
    batch: int
    heads: int
    head_dim: int
    seq_len: int
    n_buckets: int | None
    drop_rate: float | None
    dtype: str
    model: str = ""  # model suites: ModelConfig.label(), e.g. L12-D768-H12-M4-V50304
    compile: bool | None = None  # model suites: the step ran through torch.compile
    ms_median: float | None = None
    ms_q20: float | None = None
    ms_q80: float | None = None
    tflops_dense_equiv: float | None = None
    tflops_effective: float | None = None
    density: float | None = None
    speedup: float | None = None
    tokens_per_s: float | None = None
    peak_mem_mib: float | None = None
    nvml_mem_mib: float | None = None
    attention_ms: float | None = None
    attention_share: float | None = None
    # model suites: GPU time of all kernels per step; ms_median above it is host-paced time
    gpu_ms: float | None = None
    check_rel_err: float | None = None
    status: str = "ok"
    error: str = ""
    timer: str = ""
    baseline: str = ""
    warmup_ms: float | None = None
    rep_ms: float | None = None
    device: str = ""
    # exact | approximate | limit (constants.IMPL_KINDS)
    impl_kind: str = ""
    # approximate implementations: relative error against the point's exact sparse reference
    approx_rel_err: float | None = None
    # the limit's ms / this ms, same point and mode (results.limits)
    fraction_of_limit: float | None = None
    # NVML telemetry while the row was timed (measure.telemetry)
    sm_mhz_min: float | None = None
    sm_mhz_median: float | None = None
    mem_mhz_median: float | None = None
    temp_c_max: float | None = None
    power_w_max: float | None = None
    throttle_reasons: str = ""
    throttled: str = ""  # yes | no | "" (unknown)
    # `run --profile-stages`: per-call GPU time by stage, "stage=ms;stage=ms", and idle time
    stage_ms: str = ""
    gpu_idle_ms: float | None = None
    # Wall seconds spent producing this row since the previous one (a task's first row carries
    # its set-up: inputs, compilation, checks); a task's rows sum to its wall time. What
    # `--cost-from` balances shards by.
    wall_s: float | None = None

    @property
    def key(self) -> RowKey:
        return RowKey.of(
            impl=self.impl,
            batch=self.batch,
            heads=self.heads,
            head_dim=self.head_dim,
            seq_len=self.seq_len,
            n_buckets=self.n_buckets,
            drop_rate=self.drop_rate,
            dtype=self.dtype,
            mode=self.mode,
            model=self.model,
            compile=self.compile,
        )


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow))
INT_COLUMNS = ("batch", "heads", "head_dim", "seq_len")
OPTIONAL_INT_COLUMNS = ("n_buckets",)
BOOL_COLUMNS = ("compile",)
TEXT_COLUMNS = (
    "suite",
    "impl",
    "mode",
    "dtype",
    "model",
    "status",
    "error",
    "timer",
    "baseline",
    "device",
    "impl_kind",
    "throttle_reasons",
    "throttled",
    "stage_ms",
)
FLOAT_COLUMNS = tuple(
    c
    for c in COLUMNS
    if c not in (*INT_COLUMNS, *OPTIONAL_INT_COLUMNS, *BOOL_COLUMNS, *TEXT_COLUMNS)
)
# Key columns that files written before model suites existed lack (read as blank).
OPTIONAL_KEY_COLUMNS = ("model", "compile")


@dataclass(frozen=True)
class RowKey:
    """What identifies a row: a file holds each key once, resume skips keys already written,
    the gate pairs rows by key. Field order is the JSON order of `scfa-bench check --json`."""

    impl: str
    batch: int
    heads: int
    head_dim: int
    seq_len: int
    n_buckets: int | None
    drop_rate: float | None
    dtype: str
    mode: str
    model: str = ""
    compile: bool | None = None

    @classmethod
    def of(cls, *, drop_rate: float | None, **parts: Any) -> RowKey:
        """A key whose drop rate is rounded as the CSV writes it (so written and re-read rows,
        and 0.5 and 0.50000000001, give the same key)."""
        rounded = None if drop_rate is None else float(format_cell(float(drop_rate)))
        return cls(drop_rate=rounded, **parts)

    @classmethod
    def for_task(cls, suite: Suite, task: Task, mode: str) -> RowKey:
        p = task.point
        return cls.of(
            impl=task.impl,
            seq_len=p.seq_len,
            n_buckets=p.n_buckets,
            drop_rate=p.drop_rate,
            mode=mode,
            **task_shape(suite, task),
        )

    def point_label(self) -> str:
        """The swept part: 'nb=8 T=4096' (model rows: 'nb=8 T=4096 compiled')."""
        parts = []
        if self.n_buckets is not None:
            parts.append(f"nb={self.n_buckets}")
        if self.drop_rate is not None:
            parts.append(f"p={self.drop_rate:g}")
        parts.append(f"T={self.seq_len}")
        if self.compile is not None:
            parts.append("compiled" if self.compile else "eager")
        return " ".join(parts)

    def shape_label(self) -> str:
        model = f"{self.model} " if self.model else ""
        return f"{model}B={self.batch} H={self.heads} D={self.head_dim} {self.dtype}"

    def label(self) -> str:
        return f"{self.impl} {self.point_label()} {self.mode} {self.shape_label()}"


def task_shape(suite: Suite, task: Task) -> dict[str, Any]:
    """batch, heads, head_dim, dtype, model and compile of a task's rows: the suite's shape, or
    in a model suite the model's (its batch may depend on seq_len)."""
    if suite.model is None:
        assert suite.shape is not None
        s = suite.shape
        return {"batch": s.batch, "heads": s.heads, "head_dim": s.head_dim, "dtype": s.dtype}
    m = suite.model
    return {
        "batch": m.batch_for(task.point.seq_len),
        "heads": m.config.heads,
        "head_dim": m.config.head_dim,
        "dtype": m.dtype,
        "model": m.config.label(),
        "compile": task.point.compile,
    }


def base_row(suite: Suite, task: Task, mode: str, device_name: str) -> ResultRow:
    """The identity and settings columns of a row, nothing measured yet."""
    timing = suite.timing if suite.model is None else None  # model suites count steps
    return ResultRow(
        suite=suite.name,
        impl=task.impl,
        mode=mode,
        seq_len=task.point.seq_len,
        n_buckets=task.point.n_buckets,
        drop_rate=task.point.drop_rate,
        baseline=suite.baseline or "",
        warmup_ms=None if timing is None else timing.warmup_ms,
        rep_ms=None if timing is None else timing.rep_ms,
        device=device_name,
        **task_shape(suite, task),
    )


def format_cell(value: Any) -> str:
    """CSV text of a value: '' for None, 6 significant digits for floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def row_cells(row: ResultRow) -> dict[str, str]:
    return {name: format_cell(value) for name, value in asdict(row).items()}

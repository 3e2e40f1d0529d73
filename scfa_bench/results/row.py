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
    ms_median: float | None = None
    ms_q20: float | None = None
    ms_q80: float | None = None
    tflops_dense_equiv: float | None = None
    tflops_effective: float | None = None
    density: float | None = None
    speedup: float | None = None
    peak_mem_mib: float | None = None
    nvml_mem_mib: float | None = None
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
        )


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow))
INT_COLUMNS = ("batch", "heads", "head_dim", "seq_len")
OPTIONAL_INT_COLUMNS = ("n_buckets",)
TEXT_COLUMNS = (
    "suite",
    "impl",
    "mode",
    "dtype",
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
    c for c in COLUMNS if c not in (*INT_COLUMNS, *OPTIONAL_INT_COLUMNS, *TEXT_COLUMNS)
)


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

    @classmethod
    def of(cls, *, drop_rate: float | None, **parts: Any) -> RowKey:
        """A key whose drop rate is rounded as the CSV writes it (so written and re-read rows,
        and 0.5 and 0.50000000001, give the same key)."""
        rounded = None if drop_rate is None else float(format_cell(float(drop_rate)))
        return cls(drop_rate=rounded, **parts)

    @classmethod
    def for_task(cls, suite: Suite, task: Task, mode: str) -> RowKey:
        s = suite.shape
        p = task.point
        return cls.of(
            impl=task.impl,
            batch=s.batch,
            heads=s.heads,
            head_dim=s.head_dim,
            seq_len=p.seq_len,
            n_buckets=p.n_buckets,
            drop_rate=p.drop_rate,
            dtype=s.dtype,
            mode=mode,
        )

    def point_label(self) -> str:
        """The swept part: 'nb=8 T=4096'."""
        parts = []
        if self.n_buckets is not None:
            parts.append(f"nb={self.n_buckets}")
        if self.drop_rate is not None:
            parts.append(f"p={self.drop_rate:g}")
        return " ".join([*parts, f"T={self.seq_len}"])

    def shape_label(self) -> str:
        return f"B={self.batch} H={self.heads} D={self.head_dim} {self.dtype}"

    def label(self) -> str:
        return f"{self.impl} {self.point_label()} {self.mode} {self.shape_label()}"


def base_row(suite: Suite, task: Task, mode: str, device_name: str) -> ResultRow:
    """The identity and settings columns of a row, nothing measured yet."""
    s = suite.shape
    return ResultRow(
        suite=suite.name,
        impl=task.impl,
        mode=mode,
        batch=s.batch,
        heads=s.heads,
        head_dim=s.head_dim,
        seq_len=task.point.seq_len,
        n_buckets=task.point.n_buckets,
        drop_rate=task.point.drop_rate,
        dtype=s.dtype,
        baseline=suite.baseline or "",
        warmup_ms=suite.timing.warmup_ms,
        rep_ms=suite.timing.rep_ms,
        device=device_name,
    )


def format_cell(value: Any) -> str:
    """CSV text of a value: '' for None, 6 significant digits for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def row_cells(row: ResultRow) -> dict[str, str]:
    return {name: format_cell(value) for name, value in asdict(row).items()}

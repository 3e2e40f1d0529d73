"""The regression gate: compare a new results CSV with a baseline one.

Rows are matched by (impl, batch, heads, head_dim, seq_len, n_buckets, drop_rate, dtype,
mode). For rows ok in both, `stats.classify_change` decides regression / improvement /
noise (large AND significant). Status changes and missing rows are judged here:

* ok in the baseline, anything else in NEW ("lost"): fails the gate.
* not ok in the baseline, ok in NEW ("recovered"): reported, passes.
* not ok in both ("still failing"): reported, passes (the baseline already failed).
* in the baseline but not in NEW ("missing"): reported, passes by default, because a
  suite that drops a point is a suite change to review, not a slower kernel; pass
  `fail_on_missing=True` (CLI `--fail-on-missing`) to make it fail.
* in NEW only ("new"): reported, passes.

A NEW run without a single ok row fails, whatever the baseline held.

Exit codes: 0 pass, 1 regression, lost correctness, no ok row in NEW (or missing rows when
asked), and bad input raises `InputError` (exit 2): no rows in common, different cards,
wall-clock runs without `allow_wall_clock`, other kernels with `require_same_kernels`
(`gate_inputs`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from scfa_bench.analysis import stats
from scfa_bench.analysis.gate_inputs import (
    DEFAULT_MAX_SLOWDOWN,
    check_same_clock,
    kernels_warning,
    threshold_for,
)
from scfa_bench.errors import EXIT_FAILURE, EXIT_OK, InputError
from scfa_bench.results.reader import Results, read_results
from scfa_bench.results.row import ResultRow, RowKey

__all__ = ["DEFAULT_MAX_SLOWDOWN", "GateResult", "Verdict", "compare"]


class Verdict(str, Enum):
    REGRESSION = "regression"
    LOST = "lost"  # ok in the baseline, not ok now
    MISSING = "missing"  # in the baseline, absent now
    IMPROVEMENT = "improvement"
    RECOVERED = "recovered"  # not ok in the baseline, ok now
    STILL_FAILING = "still failing"
    NEW = "new"  # absent in the baseline
    NOISE = "noise"


# Table order: what fails first, then what to look at, then the rest.
VERDICT_ORDER = tuple(Verdict)
_FAILING = frozenset({Verdict.REGRESSION, Verdict.LOST})


@dataclass(frozen=True)
class RowMeasurement:
    """One row's status and timings as the gate compares them."""

    status: str
    ms_median: float | None
    ms_q20: float | None
    ms_q80: float | None
    error: str

    @classmethod
    def of(cls, row: ResultRow) -> RowMeasurement:
        return cls(row.status, row.ms_median, row.ms_q20, row.ms_q80, row.error)

    @property
    def interval(self) -> stats.Interval:
        assert self.ms_q20 is not None and self.ms_q80 is not None
        return stats.Interval(self.ms_q20, self.ms_q80)


@dataclass(frozen=True)
class RowComparison:
    key: RowKey
    verdict: Verdict
    base: RowMeasurement | None
    new: RowMeasurement | None

    @property
    def ratio(self) -> float | None:
        """new / base median time, when both rows are ok."""
        if self.base is None or self.new is None:
            return None
        if self.base.status != "ok" or self.new.status != "ok":
            return None
        assert self.base.ms_median is not None and self.new.ms_median is not None
        return stats.time_ratio(self.new.ms_median, self.base.ms_median)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.key),
            "verdict": self.verdict.value,
            "ratio": self.ratio,
            "base": asdict(self.base) if self.base else None,
            "new": asdict(self.new) if self.new else None,
        }


@dataclass(frozen=True)
class GateResult:
    rows: tuple[RowComparison, ...]
    max_slowdown: float
    base_device: str | None
    new_device: str | None
    fail_on_missing: bool = False
    new_ok_rows: int = 1  # ok rows in NEW; none at all fails the gate
    warnings: tuple[str, ...] = ()

    def with_verdict(self, verdict: Verdict) -> tuple[RowComparison, ...]:
        return tuple(r for r in self.rows if r.verdict == verdict)

    @property
    def regressions(self) -> tuple[RowComparison, ...]:
        return self.with_verdict(Verdict.REGRESSION)

    @property
    def improvements(self) -> tuple[RowComparison, ...]:
        return self.with_verdict(Verdict.IMPROVEMENT)

    @property
    def lost(self) -> tuple[RowComparison, ...]:
        return self.with_verdict(Verdict.LOST)

    @property
    def missing(self) -> tuple[RowComparison, ...]:
        return self.with_verdict(Verdict.MISSING)

    @property
    def noise(self) -> tuple[RowComparison, ...]:
        return self.with_verdict(Verdict.NOISE)

    @property
    def failing(self) -> tuple[RowComparison, ...]:
        fail = set(_FAILING) | ({Verdict.MISSING} if self.fail_on_missing else set())
        return tuple(r for r in self.rows if r.verdict in fail)

    @property
    def passed(self) -> bool:
        return not self.failing and self.new_ok_rows > 0

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_FAILURE

    def counts(self) -> dict[str, int]:
        return {v.value: len(self.with_verdict(v)) for v in VERDICT_ORDER}

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "max_slowdown": self.max_slowdown,
            "fail_on_missing": self.fail_on_missing,
            "base_device": self.base_device,
            "new_device": self.new_device,
            "new_ok_rows": self.new_ok_rows,
            "warnings": list(self.warnings),
            "counts": self.counts(),
            "rows": [r.to_dict() for r in self.rows],
        }


def compare(
    new: Results | str | Path,
    base: Results | str | Path,
    max_slowdown: float | None = None,
    allow_different_device: bool = False,
    fail_on_missing: bool = False,
    allow_wall_clock: bool = False,
    require_same_kernels: bool = False,
) -> GateResult:
    """Compare NEW with BASE row by row; raise InputError on input the gate cannot judge.

    `max_slowdown` None: 0.10, or 0.5 for wall-clock runs (allowed only with
    `allow_wall_clock`)."""
    if max_slowdown is not None and not (
        isinstance(max_slowdown, int | float) and math.isfinite(max_slowdown)
    ):
        raise InputError(f"--max-slowdown must be a finite number, got {max_slowdown!r}")
    if max_slowdown is not None and max_slowdown < 0:
        raise InputError(
            f"--max-slowdown must be >= 0 (a fraction, 0.10 = 10%), got {max_slowdown}"
        )
    new_res = new if isinstance(new, Results) else read_results(new)
    base_res = base if isinstance(base, Results) else read_results(base)
    max_slowdown = threshold_for(new_res, base_res, max_slowdown, allow_wall_clock)
    check_same_clock(new_res, base_res)
    warning = kernels_warning(new_res, base_res, require_same_kernels)
    new_device, base_device = new_res.device_name, base_res.device_name
    if (
        not allow_different_device
        and new_device is not None
        and base_device is not None
        and new_device != base_device
    ):
        raise InputError(
            f"different cards: {new_res.path} ran on {new_device!r}, "
            f"baseline {base_res.path} on {base_device!r}; timings are only comparable on the "
            "same card (pass --allow-different-device to compare anyway)"
        )
    new_rows = _index_rows(new_res)
    base_rows = _index_rows(base_res)
    if not new_rows.keys() & base_rows.keys():
        raise InputError(
            f"no rows in common between {new_res.path} and baseline {base_res.path} "
            f"(matched on {', '.join(RowKey.__dataclass_fields__)})"
        )
    compared = [
        RowComparison(
            key,
            _judge(new_rows.get(key), base_rows.get(key), max_slowdown),
            base_rows.get(key),
            new_rows.get(key),
        )
        for key in sorted(new_rows.keys() | base_rows.keys(), key=_sort_key)
    ]
    compared.sort(key=lambda r: VERDICT_ORDER.index(r.verdict))  # stable: keeps key order
    return GateResult(
        rows=tuple(compared),
        max_slowdown=float(max_slowdown),
        base_device=base_device,
        new_device=new_device,
        fail_on_missing=fail_on_missing,
        new_ok_rows=len(new_res.ok_rows),
        warnings=(warning,) if warning else (),
    )


def _judge(new: RowMeasurement | None, base: RowMeasurement | None, max_slowdown: float) -> Verdict:
    if new is None:
        return Verdict.MISSING
    if base is None:
        return Verdict.NEW
    if base.status == "ok" and new.status != "ok":
        return Verdict.LOST
    if base.status != "ok":
        return Verdict.RECOVERED if new.status == "ok" else Verdict.STILL_FAILING
    assert new.ms_median is not None and base.ms_median is not None
    change = stats.classify_change(
        new.ms_median, new.interval, base.ms_median, base.interval, max_slowdown
    )
    return {
        stats.Change.REGRESSION: Verdict.REGRESSION,
        stats.Change.IMPROVEMENT: Verdict.IMPROVEMENT,
        stats.Change.NOISE: Verdict.NOISE,
    }[change]


def _index_rows(results: Results) -> dict[RowKey, RowMeasurement]:
    indexed: dict[RowKey, RowMeasurement] = {}
    lines: dict[RowKey, int] = {}
    for line, row in zip(results.lines, results.rows, strict=True):
        key = row.key
        if key in indexed:
            raise InputError(
                f"{results.path}: line {line} repeats the row of line {lines[key]} "
                f"({key.label()}); each (impl, point, mode) must appear once"
            )
        lines[key] = line
        indexed[key] = RowMeasurement.of(row)
    return indexed


def _sort_key(key: RowKey) -> tuple:
    return (
        key.impl,
        key.dtype,
        key.batch,
        key.heads,
        key.head_dim,
        key.mode,
        key.n_buckets if key.n_buckets is not None else -1,
        key.drop_rate if key.drop_rate is not None else -1.0,
        key.seq_len,
    )

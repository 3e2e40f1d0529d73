"""Were two runs measured at the same clocks? The gate's guard against unfair comparisons.

Each row carries the median SM clock NVML saw while it was timed (`sm_mhz_median`). A run's
clock is the median of its rows' medians (rows whose status is `ok` and that have one). Two
runs differ when their clocks differ by more than `max_rel_diff` of the baseline's; a run
without telemetry (CPU, no NVML) cannot be compared and says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scfa_bench.measure.telemetry import run_sm_clock

DEFAULT_MAX_CLOCK_DIFF = 0.05


@dataclass(frozen=True)
class ClockComparison:
    baseline_mhz: float | None
    new_mhz: float | None
    rel_diff: float | None  # (new - baseline) / baseline
    differs: bool  # known, and beyond the threshold
    message: str


def compare_clocks(
    baseline_rows: Iterable[Any],
    new_rows: Iterable[Any],
    *,
    max_rel_diff: float = DEFAULT_MAX_CLOCK_DIFF,
) -> ClockComparison:
    base, new = run_sm_clock(baseline_rows), run_sm_clock(new_rows)
    if base is None or new is None:
        missing = " and ".join(
            name for name, value in (("baseline", base), ("new run", new)) if value is None
        )
        return ClockComparison(
            base, new, None, False, f"SM clocks not compared: no telemetry in the {missing}"
        )
    rel = (new - base) / base
    differs = abs(rel) > max_rel_diff
    verdict = "differ by more than" if differs else "within"
    return ClockComparison(
        base,
        new,
        rel,
        differs,
        f"median SM clock {new:.0f} MHz vs baseline {base:.0f} MHz ({rel:+.1%}): "
        f"{verdict} {max_rel_diff:.0%}",
    )

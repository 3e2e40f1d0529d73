"""The table the plots and the report draw from: a run's rows as a DataFrame, speedups filled.

`prepare` is the one step between reading a results file and analysing it; the report prepares
once and hands the same data to the plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scfa_bench.constants import ROW_MODES
from scfa_bench.results.limits import fill_fraction_of_limit
from scfa_bench.results.reader import Results
from scfa_bench.results.row import (
    COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    OPTIONAL_INT_COLUMNS,
    ResultRow,
)
from scfa_bench.results.speedup import fill_speedups

# Tables and figures show fwd+bwd first, then the other modes in run order (model steps last).
REPORT_MODES = tuple(sorted(ROW_MODES, key=lambda mode: mode != "fwd+bwd"))


@dataclass(frozen=True, eq=False)
class PreparedResults:
    """A results file and its rows as a DataFrame (integers as int64; optional numbers as
    float64 with NaN for blanks, so n_buckets is a float there)."""

    results: Results
    frame: pd.DataFrame

    @property
    def path(self) -> Path:
        return self.results.path

    @property
    def baseline(self) -> str | None:
        return self.results.baseline

    @property
    def device_name(self) -> str | None:
        return self.results.device_name

    @property
    def failed(self) -> pd.DataFrame:
        return self.frame[self.frame["status"] != "ok"]


def rows_frame(rows: Sequence[ResultRow]) -> pd.DataFrame:
    """The rows as a DataFrame with one column per CSV column."""
    columns: dict[str, pd.Series] = {}
    for name in COLUMNS:
        values = [getattr(r, name) for r in rows]
        if name in INT_COLUMNS:
            columns[name] = pd.Series(values, dtype="int64")
        elif name in OPTIONAL_INT_COLUMNS or name in FLOAT_COLUMNS:
            floats = [math.nan if v is None else float(v) for v in values]
            columns[name] = pd.Series(floats, dtype="float64")
        else:
            columns[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns)


def prepare(results: Results) -> PreparedResults:
    """The rows with speedups from the baseline where the CSV left them empty."""
    rows = fill_speedups(results.rows, results.baseline, keep_existing=True)
    rows = fill_fraction_of_limit(rows)
    return PreparedResults(results, rows_frame(rows))

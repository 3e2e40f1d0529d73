"""Read a results CSV and its `.meta.json`, validate them, and hand back typed data.

Everything downstream (plots, report, gate) works on the `Results` this module returns,
so malformed input is caught here once, with an `InputError` naming the file, the line
and the column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scfa_bench.errors import InputError

# The runner's column order and statuses are the single source of truth.
from scfa_bench.results import COLUMNS as RESULT_COLUMNS
from scfa_bench.results import KEY_COLUMNS, STATUSES

# The analysis cannot work without these; the others are filled with blanks if absent.
REQUIRED_COLUMNS = (*KEY_COLUMNS, "ms_median", "ms_q20", "ms_q80", "status")
INT_COLUMNS = ("batch", "heads", "head_dim", "seq_len")
OPTIONAL_INT_COLUMNS = ("n_buckets",)
FLOAT_COLUMNS = (
    "drop_rate",
    "ms_median",
    "ms_q20",
    "ms_q80",
    "tflops_dense_equiv",
    "tflops_effective",
    "density",
    "speedup",
    "peak_mem_mib",
    "nvml_mem_mib",
    "check_rel_err",
    "warmup_ms",
    "rep_ms",
)
MODES = ("fwd+bwd", "fwd", "bwd")  # report order: fwd+bwd first
DTYPES = ("fp16", "bf16", "fp32")
# Cells that mean "no value" besides the empty string (what pandas or a person may write).
_BLANKS = frozenset({"", "nan", "NaN", "n/a", "N/A", "None", "none", "null"})


@dataclass(frozen=True, eq=False)
class Results:
    """One validated results file: its rows, its meta (empty dict when absent) and paths."""

    path: Path
    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    meta_path: Path | None = None

    @property
    def name(self) -> str:
        """The run name: the CSV file name without `.csv`."""
        return self.path.stem

    @property
    def ok_rows(self) -> pd.DataFrame:
        return self.frame[self.frame["status"] == "ok"]

    @property
    def failed_rows(self) -> pd.DataFrame:
        return self.frame[self.frame["status"] != "ok"]

    @property
    def device_name(self) -> str | None:
        """The card: meta `device_name`, else the CSV's single `device` value, else None."""
        from_meta = self.meta.get("device_name")
        if isinstance(from_meta, str) and from_meta.strip():
            return from_meta.strip()
        values = _distinct_text(self.frame, "device")
        return values[0] if len(values) == 1 else None

    @property
    def baseline(self) -> str | None:
        """The suite's baseline implementation: meta `baseline`, else the CSV column."""
        from_meta = self.meta.get("baseline")
        if isinstance(from_meta, str) and from_meta.strip():
            return from_meta.strip()
        values = _distinct_text(self.frame, "baseline")
        return values[0] if len(values) == 1 else None

    @property
    def suite_name(self) -> str:
        from_meta = self.meta.get("suite_name")
        if isinstance(from_meta, str) and from_meta.strip():
            return from_meta.strip()
        values = _distinct_text(self.frame, "suite")
        return ", ".join(values) if values else self.name


def meta_path_for(csv_path: Path) -> Path:
    """`results/x.csv` -> `results/x.meta.json`."""
    return csv_path.with_name(csv_path.stem + ".meta.json")


def load_results(path: str | Path) -> Results:
    """Read and validate a results CSV and its sidecar meta file (optional: {} when absent).

    Raises InputError for a missing or unreadable file, missing columns, unknown status,
    mode or dtype values, non-numeric numbers, or an ok row without timings.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: results file not found")
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(
            f"{csv_path}: file is empty, expected a results CSV with a header"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{csv_path}: not a readable CSV ({exc})") from None
    frame = _validate_frame(raw, csv_path)
    meta_path = meta_path_for(csv_path)
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        meta = _read_meta(meta_path)
    return Results(path=csv_path, frame=frame, meta=meta, meta_path=meta_path if meta else None)


def _read_meta(meta_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{meta_path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path}: cannot read ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _validate_frame(raw: pd.DataFrame, csv_path: Path) -> pd.DataFrame:
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; "
            f"expected the results columns {', '.join(RESULT_COLUMNS)}"
        )
    frame = raw.copy()
    for col in RESULT_COLUMNS:
        if col not in frame.columns:
            frame[col] = ""
    for col in frame.columns:  # every cell was read as text
        frame[col] = frame[col].astype(str).str.strip()

    # CSV line of each row: header is line 1.
    def where(idx: int, col: str) -> str:
        return f"{csv_path}: line {idx + 2}, column {col!r}"

    for col, allowed in (("mode", MODES), ("dtype", DTYPES), ("status", STATUSES)):
        for idx, value in frame[col].items():
            if value not in allowed:
                raise InputError(f"{where(idx, col)}: {value!r} is not one of {', '.join(allowed)}")
    for idx, value in frame["impl"].items():
        if not value:
            raise InputError(f"{where(idx, 'impl')}: empty implementation name")

    for col in INT_COLUMNS + OPTIONAL_INT_COLUMNS + FLOAT_COLUMNS:
        frame[col] = _parse_numbers(
            frame[col],
            integer=col not in FLOAT_COLUMNS,
            optional=col not in INT_COLUMNS,
            where=lambda idx, c=col: where(idx, c),
        )
    for idx, row in frame[frame["status"] == "ok"].iterrows():
        _check_ok_timings(row, lambda c, i=idx: where(i, c))
    frame["error"] = frame["error"].fillna("")
    return frame


def _parse_numbers(column: pd.Series, *, integer: bool, optional: bool, where) -> pd.Series:
    """Parse one column; blanks become NaN (so optional integers such as n_buckets are floats)."""
    values: list[float] = []
    for idx, cell in column.items():
        if cell in _BLANKS:
            if not optional:
                raise InputError(f"{where(idx)}: empty, expected a number")
            values.append(math.nan)
            continue
        try:
            number = float(cell)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise InputError(f"{where(idx)}: {cell!r} is not {kind}") from None
        if integer and not number.is_integer():
            raise InputError(f"{where(idx)}: {cell!r} is not an integer")
        values.append(number)
    parsed = pd.Series(values, index=column.index, dtype="float64")
    return parsed.astype("int64") if integer and not optional else parsed


def _check_ok_timings(row: pd.Series, where) -> None:
    """An ok row must carry positive timings with q20 <= q80 (the gate compares them)."""
    for col in ("ms_median", "ms_q20", "ms_q80"):
        value = row[col]
        if pd.isna(value) or not math.isfinite(value) or value <= 0:
            raise InputError(f"{where(col)}: status is ok but {col} is {value!r}, expected > 0")
    if row["ms_q20"] > row["ms_q80"]:
        raise InputError(
            f"{where('ms_q20')}: ms_q20 {row['ms_q20']} is above ms_q80 {row['ms_q80']}"
        )


def _distinct_text(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return []
    values = {str(v).strip() for v in frame[column] if isinstance(v, str) and v.strip()}
    return sorted(values)

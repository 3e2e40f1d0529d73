"""Read and validate a results CSV and its `.meta.json`: the one reader of results files.

Resume, the summary, plots, report and the gate all work on the `Results` returned here, so
malformed input is caught once, with an `InputError` naming the file, the line and the column.
Column order and extra columns are tolerated (extra ones are ignored); optional columns may be
absent; the run loop adds its own stricter header check before appending to a file.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scfa_bench.constants import DTYPES, ROW_MODES, STATUSES
from scfa_bench.errors import InputError
from scfa_bench.results.meta import meta_path_for, read_meta, run_state
from scfa_bench.results.row import (
    BOOL_COLUMNS,
    COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    OPTIONAL_INT_COLUMNS,
    OPTIONAL_KEY_COLUMNS,
    ResultRow,
    RowKey,
)

# The analysis cannot work without these; the others are read as blanks when absent.
REQUIRED_COLUMNS = (
    *(c for c in RowKey.__dataclass_fields__ if c not in OPTIONAL_KEY_COLUMNS),
    "ms_median",
    "ms_q20",
    "ms_q80",
    "status",
)
# Cells that mean "no value" besides the empty string (what pandas or a person may write).
_BLANKS = frozenset({"", "nan", "NaN", "n/a", "N/A", "None", "none", "null"})
_CHOICES = {"mode": ROW_MODES, "dtype": DTYPES, "status": STATUSES}
_BOOLS = {"true": True, "True": True, "false": False, "False": False}


@dataclass(frozen=True, eq=False)
class Results:
    """One validated results file: its rows (with their CSV lines), header, meta and paths."""

    path: Path
    rows: tuple[ResultRow, ...]
    lines: tuple[int, ...]  # CSV line of each row (the header is line 1)
    columns: tuple[str, ...]  # the header as written in the file
    meta: dict[str, Any] = field(default_factory=dict)
    meta_path: Path | None = None
    # A last line without its newline (a write cut short), when asked to leave it out.
    partial_tail: bytes = b""

    @property
    def state(self) -> str:
        """How the run ended (`results.meta.run_state`); "unknown" without a meta file."""
        return run_state(self.meta) if self.meta else "unknown"

    @property
    def wall_clock(self) -> bool:
        """Timed by the wall clock (CPU, Triton's interpreter): says nothing about GPU speed."""
        return any(r.timer == "wall_clock" for r in self.ok_rows)

    @property
    def name(self) -> str:
        """The run name: the CSV file name without `.csv`."""
        return self.path.stem

    @property
    def ok_rows(self) -> tuple[ResultRow, ...]:
        return tuple(r for r in self.rows if r.status == "ok")

    @property
    def failed_rows(self) -> tuple[ResultRow, ...]:
        return tuple(r for r in self.rows if r.status != "ok")

    def _meta_text(self, key: str) -> str | None:
        value = self.meta.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    def _distinct(self, column: str) -> list[str]:
        return sorted({v for r in self.rows if (v := getattr(r, column).strip())})

    @property
    def device_name(self) -> str | None:
        """The card: meta `device_name`, else the CSV's single `device` value, else None."""
        values = self._distinct("device")
        return self._meta_text("device_name") or (values[0] if len(values) == 1 else None)

    @property
    def baseline(self) -> str | None:
        """The suite's baseline implementation: meta `baseline`, else the CSV column."""
        values = self._distinct("baseline")
        return self._meta_text("baseline") or (values[0] if len(values) == 1 else None)

    @property
    def suite_name(self) -> str:
        values = self._distinct("suite")
        return self._meta_text("suite_name") or (", ".join(values) if values else self.name)


def split_partial_tail(data: bytes) -> tuple[bytes, bytes]:
    """(whole lines, the last line when it lacks its newline: a write cut short)."""
    if not data or data.endswith(b"\n"):
        return data, b""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def read_results(
    path: str | Path, *, with_meta: bool = True, drop_partial_tail: bool = False
) -> Results:
    """Read and validate a results CSV and its sidecar meta file (optional: {} when absent).

    Raises InputError for a missing or unreadable file, missing columns, a line with more or
    fewer cells than the header, unknown status, mode or dtype values, non-numeric numbers, or
    an ok row without timings. Without `with_meta` the meta file is not read. With
    `drop_partial_tail` a last line without its newline is left out and kept in
    `Results.partial_tail` (resume cuts it off the file).
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: results file not found")
    rows: list[ResultRow] = []
    lines: list[int] = []
    try:
        data = csv_path.read_bytes()
        tail = b""
        if drop_partial_tail:
            data, tail = split_partial_tail(data)
        with io.StringIO(data.decode("utf-8"), newline="") as file:
            reader = csv.reader(file, skipinitialspace=True)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{csv_path}: file is empty, expected a results CSV with a header")
            columns = tuple(c.strip() for c in header)
            _check_header(columns, csv_path)
            while True:
                start = reader.line_num + 1
                cells = next(reader, None)
                if cells is None:
                    break
                if not cells:
                    continue  # a blank line
                if len(cells) != len(columns):
                    raise InputError(
                        f"{csv_path}: line {start} has {len(cells)} cells, the header "
                        f"{len(columns)} (a partly written or edited row)"
                    )
                by_column = dict(zip(columns, (c.strip() for c in cells), strict=True))
                rows.append(
                    parse_row(by_column, lambda c, n=start: f"{csv_path}: line {n}, column {c!r}")
                )
                lines.append(start)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{csv_path}: not a readable CSV ({exc})") from None
    meta_path = meta_path_for(csv_path)
    meta = read_meta(meta_path) if with_meta and meta_path.is_file() else {}
    return Results(
        path=csv_path,
        rows=tuple(rows),
        lines=tuple(lines),
        columns=columns,
        meta=meta,
        meta_path=meta_path if meta else None,
        partial_tail=tail,
    )


def _check_header(columns: tuple[str, ...], csv_path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; "
            f"expected the results columns {', '.join(COLUMNS)}"
        )


def parse_row(cells: dict[str, str], where: Any) -> ResultRow:
    """A validated ResultRow from the text cells of one line; `where(column)` names the cell."""
    for column, allowed in _CHOICES.items():
        if cells[column] not in allowed:
            raise InputError(
                f"{where(column)}: {cells[column]!r} is not one of {', '.join(allowed)}"
            )
    if not cells["impl"]:
        raise InputError(f"{where('impl')}: empty implementation name")
    values: dict[str, Any] = {}
    for column in COLUMNS:
        text = cells.get(column, "")
        if column in INT_COLUMNS or column in OPTIONAL_INT_COLUMNS:
            values[column] = _number(
                text, where(column), integer=True, optional=column not in INT_COLUMNS
            )
        elif column in FLOAT_COLUMNS:
            values[column] = _number(text, where(column), integer=False, optional=True)
        elif column in BOOL_COLUMNS:
            values[column] = _boolean(text, where(column))
        else:
            values[column] = text
    row = ResultRow(**values)
    if row.status == "ok":
        _check_ok_timings(row, where)
    return row


def _number(text: str, where: str, *, integer: bool, optional: bool) -> Any:
    if text in _BLANKS:
        if not optional:
            raise InputError(f"{where}: empty, expected a number")
        return None
    try:
        number = float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InputError(f"{where}: {text!r} is not {kind}") from None
    if integer:
        if not number.is_integer():
            raise InputError(f"{where}: {text!r} is not an integer")
        return int(number)
    return number


def _boolean(text: str, where: str) -> bool | None:
    if text in _BLANKS:
        return None
    if text not in _BOOLS:
        raise InputError(f"{where}: {text!r} is not true or false")
    return _BOOLS[text]


def _check_ok_timings(row: ResultRow, where: Any) -> None:
    """An ok row must carry positive timings with q20 <= q80 (the gate compares them)."""
    for column in ("ms_median", "ms_q20", "ms_q80"):
        value = getattr(row, column)
        if value is None or not math.isfinite(value) or value <= 0:
            shown = math.nan if value is None else value
            raise InputError(
                f"{where(column)}: status is ok but {column} is {shown!r}, expected > 0"
            )
    assert row.ms_q20 is not None and row.ms_q80 is not None
    if row.ms_q20 > row.ms_q80:
        raise InputError(f"{where('ms_q20')}: ms_q20 {row.ms_q20} is above ms_q80 {row.ms_q80}")

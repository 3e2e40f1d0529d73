"""Result rows, the CSV they go to (header once, one flushed line per row), resume and speedups.

One row per (implementation, point, mode). Empty cells mean "does not apply / not measured".
`speedup` = baseline ms_median / this ms_median at the same batch, heads, head_dim, seq_len,
dtype and mode (and the same n_buckets / drop_rate when the baseline itself uses that axis);
a dense baseline row is joined to every sparse row of its seq_len.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TextIO

from scfa_bench.errors import InputError

STATUSES = ("ok", "incorrect", "oom", "error", "unavailable")


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


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow))
# Columns that identify a row: a resumed run skips rows whose key is already in the CSV.
KEY_COLUMNS = (
    "impl",
    "mode",
    "batch",
    "heads",
    "head_dim",
    "seq_len",
    "n_buckets",
    "drop_rate",
    "dtype",
)
_INT_COLUMNS = {"batch", "heads", "head_dim", "seq_len", "n_buckets"}
_FLOAT_COLUMNS = (
    {f.name for f in fields(ResultRow)}
    - _INT_COLUMNS
    - {
        "suite",
        "impl",
        "mode",
        "dtype",
        "status",
        "error",
        "timer",
        "baseline",
        "device",
    }
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


def row_key(cells: dict[str, str]) -> tuple[str, ...]:
    """Identity of a row from its CSV text (written and re-read rows give the same key)."""
    return tuple(cells.get(c, "") for c in KEY_COLUMNS)


def parse_row(cells: dict[str, str]) -> ResultRow:
    """A ResultRow from CSV text."""
    values: dict[str, Any] = {}
    for name in COLUMNS:
        text = cells.get(name, "")
        if name in _INT_COLUMNS:
            values[name] = int(text) if text else None
        elif name in _FLOAT_COLUMNS:
            values[name] = float(text) if text else None
        else:
            values[name] = text
    return ResultRow(**values)


class ResultWriter:
    """Appends rows to a CSV, writing the header only when the file is new or empty."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not path.exists() or path.stat().st_size == 0
        self._file: TextIO = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
        if is_new:
            self._writer.writeheader()
            self._file.flush()

    def write(self, row: ResultRow) -> None:
        self._writer.writerow(row_cells(row))
        self._file.flush()  # a killed run keeps every finished row
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rows(path: Path) -> list[ResultRow]:
    """Rows of a results CSV; InputError when it is missing or its header is not ours."""
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            header = tuple(reader.fieldnames or ())
            if header != COLUMNS:
                missing = [c for c in COLUMNS if c not in header]
                raise InputError(
                    f"{path}: not a scfa-bench results CSV (columns differ; missing: "
                    f"{', '.join(missing) or 'none'}; order or extra columns may differ)"
                )
            return [parse_row(cells) for cells in reader]
    except OSError as exc:
        raise InputError(f"{path}: cannot read results CSV ({exc.strerror or exc})") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: malformed results CSV ({exc})") from None


def done_keys(rows: Iterable[ResultRow]) -> set[tuple[str, ...]]:
    return {row_key(row_cells(r)) for r in rows}


def _shape_key(row: ResultRow) -> tuple:
    return (row.batch, row.heads, row.head_dim, row.seq_len, row.dtype, row.mode)


def baseline_match(row: ResultRow, baseline_rows: Iterable[ResultRow]) -> ResultRow | None:
    """The ok baseline row measured at the same shape, mode and (where it uses them) axes."""
    for base in baseline_rows:
        if base.status != "ok" or base.ms_median is None or _shape_key(base) != _shape_key(row):
            continue
        if base.n_buckets is not None and base.n_buckets != row.n_buckets:
            continue
        if base.drop_rate is not None and base.drop_rate != row.drop_rate:
            continue
        return base
    return None


def with_speedup(row: ResultRow, baseline_rows: Iterable[ResultRow]) -> ResultRow:
    """`row` with speedup = baseline ms / row ms, or None when not computable."""
    base = baseline_match(row, baseline_rows)
    if base is None or row.status != "ok" or not row.ms_median or base.ms_median is None:
        return replace(row, speedup=None)
    return replace(row, speedup=base.ms_median / row.ms_median)


def fill_speedups(rows: list[ResultRow], baseline: str) -> list[ResultRow]:
    baseline_rows = [r for r in rows if r.impl == baseline]
    return [with_speedup(r, baseline_rows) for r in rows]


def rewrite_with_speedups(path: Path, baseline: str) -> list[ResultRow]:
    """Recompute every speedup of a finished CSV (rows measured before their baseline, resumed
    rows) and replace the file atomically."""
    rows = fill_speedups(read_rows(path), baseline) if baseline else read_rows(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row_cells(row))
    os.replace(tmp, path)
    return rows


def meta_path_for(csv_path: Path) -> Path:
    """`x.csv` -> `x.meta.json`."""
    name = csv_path.name[: -len(".csv")] if csv_path.name.endswith(".csv") else csv_path.name
    return csv_path.with_name(name + ".meta.json")


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}

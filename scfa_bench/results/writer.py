"""Write result rows: appended one flushed line at a time during a run, rewritten whole after."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from scfa_bench.results.row import COLUMNS, ResultRow, row_cells


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


def rewrite_rows(path: Path, rows: Iterable[ResultRow]) -> None:
    """Replace the CSV with `rows` atomically (a reader sees the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row_cells(row))
    os.replace(tmp, path)

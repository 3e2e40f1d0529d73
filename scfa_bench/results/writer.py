"""Write result rows: appended one whole line at a time during a run, rewritten whole after.

A row reaches the file whole or not at all: each line is built in memory, written with one
`os.write` loop and `fsync`ed; when the write fails part-way (a full disk), the file is cut
back to its previous length. Any failure to write is an `OutputError` naming the file (exit 2),
never a traceback. A row cut by a crash or SIGKILL mid-write leaves a last line without its
newline, which `--resume` drops (`results.reader`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from scfa_bench.errors import output_error
from scfa_bench.results.row import COLUMNS, ResultRow, row_cells


def csv_line(cells: Iterable[str]) -> bytes:
    """One CSV record, quoted as needed, with its line terminator."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue().encode("utf-8")


def row_line(row: ResultRow) -> bytes:
    cells = row_cells(row)
    return csv_line(cells[c] for c in COLUMNS)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write fewer than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


class ResultWriter:
    """Appends rows to a CSV, writing the header only when the file is new or empty."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = _open_append(path)
        except OSError as exc:
            raise output_error(path, exc) from None
        try:
            if os.fstat(self._fd).st_size == 0:
                self._append(csv_line(COLUMNS))
        except BaseException:
            self.close()
            raise

    def write(self, row: ResultRow) -> None:
        self._append(row_line(row))

    def _append(self, data: bytes) -> None:
        try:
            start = os.fstat(self._fd).st_size
            try:
                _write_all(self._fd, data)
                os.fsync(self._fd)  # a killed run keeps every finished row
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)  # whole rows only
                raise
        except OSError as exc:
            raise output_error(self.path, exc) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replace_file(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (a reader sees the old file or the new one);
    OutputError naming `path` when it cannot be written."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise output_error(path, exc) from None


def rewrite_rows(path: Path, rows: Iterable[ResultRow]) -> None:
    """Replace the CSV with `rows` atomically."""
    replace_file(path, csv_line(COLUMNS) + b"".join(row_line(r) for r in rows))

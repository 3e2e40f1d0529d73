"""Rows of a quality (training) run: one per evaluation, in their own CSV.

Columns in order (`QUALITY_COLUMNS`): the setting and its attention, the data, the shape, the
seed, where training stood (step, tokens, epochs, train_seconds: optimizer steps only), what
validation gave (loss in nats; bits per byte on byte-level corpora or bits per token on token
files; accuracy; mean loss per equal bin of positions as a JSON list; the attention's density),
and the row's status: ok | diverged | oom | unavailable | error. Rows reach the file whole
(`results.writer`), a cut last line is dropped on resume.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from scfa_bench.errors import InputError, output_error
from scfa_bench.results.writer import csv_line, replace_file

QUALITY_STATUSES = ("ok", "diverged", "oom", "unavailable", "error")


@dataclass(frozen=True)
class QualityRow:
    suite: str
    setting: str
    impl: str
    n_buckets: int | None
    drop_rate: float | None
    shared_qk: bool
    task: str  # corpus | mqar | passkey
    corpus: str
    seq_len: int
    batch: int
    model: str
    dtype: str
    seed: int
    step: int
    tokens: int
    epochs: float | None
    train_seconds: float
    val_loss: float | None
    val_bpb: float | None
    val_bits_per_token: float | None
    val_accuracy: float | None
    loss_by_position: str  # JSON list, "" when not evaluated
    density: float | None
    status: str
    error: str
    device: str

    def unit(self) -> tuple[str, str, int, int]:
        """(setting, task, seq_len, seed): the rows of one training run of one model."""
        return (self.setting, self.task, self.seq_len, self.seed)


QUALITY_COLUMNS = tuple(f.name for f in fields(QualityRow))
_INTS = ("n_buckets", "seq_len", "batch", "seed", "step", "tokens")
_FLOATS = ("drop_rate", "epochs", "train_seconds", "val_loss", "val_bpb", "val_bits_per_token")
_FLOATS += ("val_accuracy", "density")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # exact round trip
    return str(value)


def quality_line(row: QualityRow) -> bytes:
    return csv_line(_cell(v) for v in asdict(row).values())


def _parse(record: dict[str, str], where: str) -> QualityRow:
    values: dict[str, object] = dict(record)
    try:
        for name in _INTS:
            values[name] = int(record[name]) if record[name] else None
        for name in _FLOATS:
            values[name] = float(record[name]) if record[name] else None
        values["shared_qk"] = record["shared_qk"] == "true"
        if record["loss_by_position"]:
            json.loads(record["loss_by_position"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{where}: not a quality row ({exc})") from None
    return QualityRow(**values)  # type: ignore[arg-type]


def read_quality_rows(path: Path) -> list[QualityRow]:
    """Every whole row of a quality CSV (a last line without its newline is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is not None and tuple(reader.fieldnames) != QUALITY_COLUMNS:
        raise InputError(f"{path}: not a quality CSV (its header differs from the columns)")
    return [_parse(rec, f"{path} line {i + 2}") for i, rec in enumerate(reader)]


def drop_cut_row(path: Path) -> bool:
    """Cut a last line without its newline (a row a kill cut short); True when one was cut."""
    try:
        data = path.read_bytes()
        if not data or data.endswith(b"\n"):
            return False
        os.truncate(path, data.rfind(b"\n") + 1)
    except OSError as exc:
        raise output_error(path, exc) from None
    return True


class QualityWriter:
    """Appends whole rows (fsync'ed) to a quality CSV, with the header when it is new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.stat().st_size == 0:
                replace_file(path, csv_line(QUALITY_COLUMNS))
        except OSError as exc:
            raise output_error(path, exc) from None

    def write(self, row: QualityRow) -> None:
        try:
            with self.path.open("ab") as file:
                file.write(quality_line(row))
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise output_error(self.path, exc) from None


__all__ = [
    "QUALITY_COLUMNS",
    "QUALITY_STATUSES",
    "QualityRow",
    "QualityWriter",
    "drop_cut_row",
    "quality_line",
    "read_quality_rows",
]

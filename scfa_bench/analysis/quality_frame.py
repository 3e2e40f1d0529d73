"""Reading a quality CSV (one row per evaluation of a training run) for its plots and report.

Quality rows are not kernel rows, so they are read with `pandas.read_csv` here, not through the
results reader. A CSV is a quality one when its `.meta.json` says `"kind": "quality"`, or, without
a meta, when its header has the evaluation columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from scfa_bench.errors import InputError
from scfa_bench.results.meta import meta_path_for

QUALITY_KIND = "quality"
# Columns the analysis needs; the rest of the contract's columns are optional here.
REQUIRED_COLUMNS = ("setting", "task", "seed", "step", "tokens", "train_seconds", "val_loss")
NUMERIC_COLUMNS = (
    "seed",
    "step",
    "tokens",
    "epochs",
    "train_seconds",
    "val_loss",
    "val_bpb",
    "val_bits_per_token",
    "val_accuracy",
    "seq_len",
)
# Rows of one experiment are compared with each other (dense of the same task, corpus, length
# and model); the columns that exist among these define it.
EXPERIMENT_COLUMNS = ("task", "corpus", "seq_len", "model")
DENSE_SETTING = "dense"


def is_quality_csv(path: str | Path) -> bool:
    """True for a quality results CSV (by its meta's kind, else by its columns)."""
    path = Path(path)
    meta = meta_path_for(path)
    if meta.is_file():
        try:
            kind = json.loads(meta.read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind is not None:
            return kind == QUALITY_KIND
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return set(REQUIRED_COLUMNS) <= set(header)


def read_quality(path: str | Path) -> pd.DataFrame:
    """The rows of a quality CSV, numbers as numbers; InputError naming the file when unusable."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such quality results file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read as a quality CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: not a quality CSV, missing column(s) {', '.join(missing)}")
    for column in NUMERIC_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if "status" not in frame.columns:
        frame["status"] = "ok"
    frame["status"] = frame["status"].fillna("ok").astype(str)
    frame["setting"] = frame["setting"].astype(str)
    frame["task"] = frame["task"].astype(str)
    return frame


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluations that measured something: status ok and a finite loss."""
    return frame[(frame["status"] == "ok") & frame["val_loss"].notna()]


def experiment_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in EXPERIMENT_COLUMNS if c in frame.columns]


def experiments(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per experiment, in sorted order; the title names its task, corpus, ..."""
    columns = experiment_columns(frame)
    found = []
    for key, rows in frame.groupby(columns, dropna=False, sort=True):
        values = key if isinstance(key, tuple) else (key,)
        parts = [f"{c} {_plain(v)}" for c, v in zip(columns, values, strict=True) if _known(v)]
        found.append((", ".join(parts), rows))
    return found


def primary_metric(rows: pd.DataFrame) -> str:
    """The column a setting is judged by: bits per byte on byte-level text, bits per token on
    token files, answer accuracy on recall tasks, else the loss."""
    for column in ("val_bpb", "val_bits_per_token"):
        if column in rows.columns and rows[column].notna().any():
            return column
    recall = set(rows["task"]) <= {"mqar", "passkey"}
    if recall and "val_accuracy" in rows.columns and rows["val_accuracy"].notna().any():
        return "val_accuracy"
    return "val_loss"


def _known(value: object) -> bool:
    return not (value is None or (isinstance(value, float) and value != value) or value == "")


def _plain(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

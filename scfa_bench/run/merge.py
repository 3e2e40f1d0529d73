"""Merge part CSVs (shards, workers, array tasks) into one results CSV and one meta.

The merged file is what one process would have written for the same grid: the same rows in
grid order, speedups recomputed against the baseline rows wherever they ran. Rows that appear
in more than one part are reported: as duplicates when they agree outside the timing columns,
as conflicts when they do not (status, error, density, check...). Parts measured on different
card models are refused unless `allow_mixed_devices`: their timings are not comparable, and
when allowed, each row's speedup only uses a baseline measured on its own card.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scfa_bench.errors import InputError
from scfa_bench.grid import Task
from scfa_bench.results import (
    COLUMNS,
    ResultRow,
    fill_speedups,
    format_cell,
    meta_path_for,
    read_meta,
    read_rows,
    row_cells,
    row_key,
    write_meta,
)
from scfa_bench.suite import Suite

# Columns that differ between two honest measurements of the same row.
TIMING_COLUMNS = (
    "ms_median",
    "ms_q20",
    "ms_q80",
    "tflops_dense_equiv",
    "tflops_effective",
    "speedup",
    "peak_mem_mib",
    "nvml_mem_mib",
)
_MODE_ORDER = {"fwd": 0, "bwd": 1, "fwd+bwd": 2}


@dataclass
class MergeReport:
    """What the merge found besides the rows."""

    duplicates: list[str] = field(default_factory=list)  # same row, agreeing, in several parts
    conflicts: list[str] = field(default_factory=list)  # same row, disagreeing
    missing: list[str] = field(default_factory=list)  # expected rows no part holds
    devices: list[str] = field(default_factory=list)  # card names seen


@dataclass
class Merged:
    rows: list[ResultRow]
    meta: dict[str, Any]
    report: MergeReport


def grid_keys(suite: Suite, tasks: Iterable[Task]) -> list[tuple[str, ...]]:
    """Row keys of the tasks in run order (the order one process writes them in)."""
    keys = []
    for task in tasks:
        for mode in task.modes:
            cells = {
                "impl": task.impl,
                "mode": mode,
                "batch": format_cell(suite.shape.batch),
                "heads": format_cell(suite.shape.heads),
                "head_dim": format_cell(suite.shape.head_dim),
                "seq_len": format_cell(task.point.seq_len),
                "n_buckets": format_cell(task.point.n_buckets),
                "drop_rate": format_cell(task.point.drop_rate),
                "dtype": suite.shape.dtype,
            }
            keys.append(row_key(cells))
    return keys


def non_timing_cells(row: ResultRow) -> dict[str, str]:
    """The row's CSV text without the timing columns (what two runs must agree on)."""
    return {k: v for k, v in row_cells(row).items() if k not in TIMING_COLUMNS}


def _key(row: ResultRow, by_device: bool) -> tuple[str, ...]:
    key = row_key(row_cells(row))
    return (*key, row.device) if by_device else key


def _label(row: ResultRow) -> str:
    axes = "".join(
        f" {name}={value:g}"
        for name, value in (("nb", row.n_buckets), ("p", row.drop_rate))
        if value is not None
    )
    return f"{row.impl} T={row.seq_len}{axes} {row.mode}"


def _fallback_order(row: ResultRow, baseline: str) -> tuple:
    return (
        row.seq_len,
        row.impl != baseline,
        row.impl,
        -1 if row.n_buckets is None else row.n_buckets,
        -1.0 if row.drop_rate is None else row.drop_rate,
        _MODE_ORDER.get(row.mode, 9),
        row.mode,
        row.device,
    )


def _merge_meta(parts: Sequence[Path], metas: Sequence[dict[str, Any]], devices: list[str]):
    base = dict(next((m for m in metas if m), {}))
    starts = [m.get("started") for m in metas if m.get("started")]
    ends = [m.get("finished") for m in metas]
    hosts = sorted({m["hostname"] for m in metas if m.get("hostname")})
    base.update(
        started=min(starts) if starts else None,
        finished=max(ends) if ends and all(ends) else None,
        interrupted=any(m.get("interrupted") for m in metas),
        device_name=devices[0] if len(devices) == 1 else "mixed: " + ", ".join(devices),
        hostname=hosts[0] if len(hosts) == 1 else hosts,
        resumed=sorted(r for m in metas for r in m.get("resumed", [])),
        merged_from=[
            {
                "csv": str(path),
                "device_name": m.get("device_name"),
                "hostname": m.get("hostname"),
                "started": m.get("started"),
                "finished": m.get("finished"),
                "interrupted": m.get("interrupted"),
                "shard": m.get("shard"),
                "cuda_visible_devices": m.get("cuda_visible_devices"),
            }
            for path, m in zip(parts, metas, strict=True)
        ],
    )
    base.pop("shard", None)
    base.pop("cuda_visible_devices", None)
    return base


def merge(
    parts: Sequence[Path],
    *,
    allow_mixed_devices: bool = False,
    expected: Sequence[tuple[str, ...]] | None = None,
) -> Merged:
    """Rows and meta of the parts merged. `expected`: the grid's row keys in run order
    (`grid_keys`): rows follow that order and keys no part holds are reported missing."""
    if not parts:
        raise InputError("merge: no part files given")
    part_rows = [read_rows(p) for p in parts]
    metas = [read_meta(meta_path_for(p)) for p in parts]

    suites = {r.suite for rows in part_rows for r in rows} | {
        m["suite_name"] for m in metas if m.get("suite_name")
    }
    if len(suites) > 1:
        raise InputError(f"merge: parts hold different suites ({', '.join(sorted(suites))})")
    shas = {m["suite_sha256"] for m in metas if m.get("suite_sha256")}
    if len(shas) > 1:
        raise InputError(
            "merge: parts ran different versions of the suite file (suite_sha256 differs in "
            "their .meta.json); their rows do not form one grid"
        )

    where: dict[str, list[str]] = {}
    for path, rows, meta in zip(parts, part_rows, metas, strict=True):
        names = {r.device for r in rows if r.device} or (
            {meta["device_name"]} if meta.get("device_name") else set()
        )
        for name in names:
            where.setdefault(name, []).append(str(path))
    devices = sorted(where)
    if len(devices) > 1 and not allow_mixed_devices:
        listing = "; ".join(f"{d}: {', '.join(where[d])}" for d in devices)
        raise InputError(
            f"merge: parts were measured on different cards ({listing}); their timings are not "
            "comparable. Merge each card's parts separately, or pass --allow-mixed-devices"
        )

    report = MergeReport(devices=devices)
    by_device = len(devices) > 1
    kept: dict[tuple[str, ...], tuple[ResultRow, str]] = {}
    for path, rows in zip(parts, part_rows, strict=True):
        for row in rows:
            key = _key(row, by_device)
            if key not in kept:
                kept[key] = (row, str(path))
                continue
            first, first_path = kept[key]
            where_text = f"{_label(row)} in {first_path} and {path}"
            if non_timing_cells(first) == non_timing_cells(row):
                report.duplicates.append(where_text + " (kept the first)")
                continue
            differs = sorted(
                k for k, v in non_timing_cells(row).items() if non_timing_cells(first)[k] != v
            )
            prefer_new = first.status != "ok" and row.status == "ok"
            if prefer_new:
                kept[key] = (row, str(path))
            report.conflicts.append(
                f"{where_text} differ in {', '.join(differs)} "
                f"(kept the {'ok one' if prefer_new else 'first'})"
            )

    rows = [row for row, _ in kept.values()]
    baselines = {r.baseline for r in rows if r.baseline}
    baseline = sorted(baselines)[0] if len(baselines) == 1 else ""
    if baseline:  # speedups only against a baseline measured on the same card
        filled: list[ResultRow] = []
        for device in devices or [""]:
            filled.extend(fill_speedups([r for r in rows if r.device == device], baseline))
        rows = filled + [r for r in rows if r.device not in devices]

    if expected is not None:
        position = {key: i for i, key in enumerate(expected)}
        have = {row_key(row_cells(r)) for r in rows}
        report.missing = [" ".join(k) for k in expected if k not in have]
        rows.sort(
            key=lambda r: (
                position.get(row_key(row_cells(r)), len(position)),
                _fallback_order(r, baseline),
            )
        )
    else:
        rows.sort(key=lambda r: _fallback_order(r, baseline))
    return Merged(rows, _merge_meta(parts, metas, devices), report)


def write_merged(merged: Merged, out_csv: Path) -> Path:
    """Write the merged CSV (atomically) and its meta; returns the meta's path."""
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(out_csv.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in merged.rows:
            writer.writerow(row_cells(row))
    os.replace(tmp, out_csv)
    meta_path = meta_path_for(out_csv)
    meta = dict(merged.meta)
    meta["merge_report"] = asdict(merged.report)
    write_meta(meta_path, meta)
    return meta_path

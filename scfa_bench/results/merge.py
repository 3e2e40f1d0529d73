"""Merge part CSVs (shards, workers, array tasks) into one results CSV and one meta.

The merged file is what one process would have written for the same grid: the same rows in
grid order, speedups recomputed against the baseline rows wherever they ran. Rows that appear
in more than one part are reported: as duplicates when they agree outside the timing columns,
as conflicts when they do not (status, error, density, check...). Parts measured on different
card models are refused unless `allow_mixed_devices`: their timings are not comparable, and
when allowed, each row's speedup only uses a baseline measured on its own card.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scfa_bench.constants import MODES
from scfa_bench.errors import InputError
from scfa_bench.measure.telemetry import rows_telemetry
from scfa_bench.results.limits import fill_fraction_of_limit
from scfa_bench.results.meta import meta_path_for, read_meta, write_meta
from scfa_bench.results.reader import Results, read_results
from scfa_bench.results.row import ResultRow, RowKey, row_cells
from scfa_bench.results.speedup import fill_speedups
from scfa_bench.results.writer import rewrite_rows
from scfa_bench.suite.grid import Task, expand
from scfa_bench.suite.parse import load_suite
from scfa_bench.suite.schema import Suite

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
    "wall_s",
)


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


def grid_keys(suite: Suite, tasks: Iterable[Task]) -> list[RowKey]:
    """Row keys of the tasks in run order (the order one process writes them in)."""
    return [RowKey.for_task(suite, task, mode) for task in tasks for mode in task.modes]


def non_timing_cells(row: ResultRow) -> dict[str, str]:
    """The row's CSV text without the timing columns (what two runs must agree on)."""
    return {k: v for k, v in row_cells(row).items() if k not in TIMING_COLUMNS}


def _fallback_order(row: ResultRow, baseline: str) -> tuple:
    return (
        row.seq_len,
        row.impl != baseline,
        row.impl,
        -1 if row.n_buckets is None else row.n_buckets,
        -1.0 if row.drop_rate is None else row.drop_rate,
        MODES.index(row.mode) if row.mode in MODES else len(MODES),
        row.device,
    )


def _devices(parts: Sequence[Results], allow_mixed: bool) -> list[str]:
    """Card names of the parts; InputError naming them when they differ and that is not allowed."""
    where: dict[str, list[str]] = {}
    for part in parts:
        names = {r.device for r in part.rows if r.device}
        if not names and part.device_name:
            names = {part.device_name}
        for name in names:
            where.setdefault(name, []).append(str(part.path))
    devices = sorted(where)
    if len(devices) > 1 and not allow_mixed:
        listing = "; ".join(f"{d}: {', '.join(where[d])}" for d in devices)
        raise InputError(
            f"merge: parts were measured on different cards ({listing}); their timings are not "
            "comparable. Merge each card's parts separately, or pass --allow-mixed-devices"
        )
    return devices


def _check_one_suite(parts: Sequence[Results]) -> None:
    suites = {r.suite for part in parts for r in part.rows}
    suites |= {part.meta["suite_name"] for part in parts if part.meta.get("suite_name")}
    if len(suites) > 1:
        raise InputError(f"merge: parts hold different suites ({', '.join(sorted(suites))})")
    if len({part.meta["suite_sha256"] for part in parts if part.meta.get("suite_sha256")}) > 1:
        raise InputError(
            "merge: parts ran different versions of the suite file (suite_sha256 differs in "
            "their .meta.json); their rows do not form one grid"
        )


def _resume_time(entry: Any) -> str:
    """Resume records are dicts with an ISO time (older metas held the bare time string)."""
    return str(entry.get("at", "")) if isinstance(entry, dict) else str(entry)


def _merge_meta(parts: Sequence[Results], devices: list[str]) -> dict[str, Any]:
    metas = [part.meta for part in parts]
    base = dict(next((m for m in metas if m), {}))
    starts = [m["started"] for m in metas if m.get("started")]
    ends = [m.get("finished") for m in metas]
    hosts = sorted({m["hostname"] for m in metas if m.get("hostname")})
    base.update(
        started=min(starts) if starts else None,
        finished=max(ends) if ends and all(ends) else None,  # type: ignore[type-var]
        interrupted=any(m.get("interrupted") for m in metas),
        device_name=devices[0] if len(devices) == 1 else "mixed: " + ", ".join(devices),
        hostname=hosts[0] if len(hosts) == 1 else hosts,
        resumed=sorted((r for m in metas for r in m.get("resumed", [])), key=_resume_time),
        merged_from=[
            {
                "csv": str(part.path),
                **{
                    key: part.meta.get(key)
                    for key in ("device_name", "hostname", "started", "finished", "interrupted")
                },
                "shard": part.meta.get("shard"),
                "cuda_visible_devices": part.meta.get("cuda_visible_devices"),
            }
            for part in parts
        ],
    )
    base.pop("shard", None)
    base.pop("cuda_visible_devices", None)
    return base


def merge(
    paths: Sequence[Path],
    *,
    allow_mixed_devices: bool = False,
    expected: Sequence[RowKey] | None = None,
) -> Merged:
    """Rows and meta of the parts merged. `expected`: the grid's row keys in run order
    (`grid_keys`): rows follow that order and keys no part holds are reported missing."""
    if not paths:
        raise InputError("merge: no part files given")
    parts = [read_results(p) for p in paths]
    _check_one_suite(parts)
    devices = _devices(parts, allow_mixed_devices)
    by_device = len(devices) > 1

    report = MergeReport(devices=devices)
    kept: dict[tuple, tuple[ResultRow, Path]] = {}
    for part in parts:
        for row in part.rows:
            key = (row.key, row.device if by_device else "")
            if key not in kept:
                kept[key] = (row, part.path)
                continue
            first, first_path = kept[key]
            where = f"{row.key.label()} in {first_path} and {part.path}"
            first_cells, cells = non_timing_cells(first), non_timing_cells(row)
            if first_cells == cells:
                report.duplicates.append(where + " (kept the first)")
                continue
            differs = sorted(k for k, v in cells.items() if first_cells[k] != v)
            prefer_new = first.status != "ok" and row.status == "ok"
            if prefer_new:
                kept[key] = (row, part.path)
            report.conflicts.append(
                f"{where} differ in {', '.join(differs)} "
                f"(kept the {'ok one' if prefer_new else 'first'})"
            )

    rows = [row for row, _ in kept.values()]
    baselines = {r.baseline for r in rows if r.baseline}
    baseline = baselines.pop() if len(baselines) == 1 else ""
    # Speedups and fractions of the limit only against rows measured on the same card.
    groups = [[r for r in rows if r.device == d] for d in devices] if by_device else [rows]
    if baseline:
        groups = [fill_speedups(group, baseline) for group in groups]
    rows = [r for group in groups for r in fill_fraction_of_limit(group)]

    if expected is not None:
        position = {key: i for i, key in enumerate(expected)}
        have = {r.key for r in rows}
        report.missing = [key.label() for key in expected if key not in have]
        rows.sort(key=lambda r: (position.get(r.key, len(position)), _fallback_order(r, baseline)))
    else:
        rows.sort(key=lambda r: _fallback_order(r, baseline))
    meta = _merge_meta(parts, devices)
    # The first part's summary covers only its rows: summarise the merged rows instead.
    telemetry = rows_telemetry(rows)
    if telemetry is not None:
        meta["telemetry"] = telemetry
    return Merged(rows, meta, report)


def write_merged(merged: Merged, out_csv: Path) -> Path:
    """Write the merged CSV (atomically) and its meta; returns the meta's path."""
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    rewrite_rows(out_csv, merged.rows)
    meta_path = meta_path_for(out_csv)
    write_meta(meta_path, {**merged.meta, "merge_report": asdict(merged.report)})
    return meta_path


def collect_parts(inputs: Sequence[Path]) -> list[Path]:
    """Part CSVs from the arguments: files as given, folders by their shard files."""
    parts: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(
                item.glob("*shard-*-of-*.csv"),
                key=lambda p: (len(p.name), p.name),  # shard-10 after shard-9
            )
            if not found:
                raise InputError(f"{item}: a folder without part files (*shard-I-of-N.csv)")
            parts.extend(found)
        elif item.is_file():
            parts.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    if not parts:
        raise InputError("merge: no part files given")
    return parts


def expected_keys(parts: Sequence[Path], suite_file: Path | None) -> list[RowKey] | None:
    """The grid's row keys in run order: from `suite_file`, else from the suite file the parts'
    meta names when it is still there unchanged; None when neither is known."""
    if suite_file is not None:
        suite = load_suite(suite_file)
        return grid_keys(suite, expand(suite))
    metas = [read_meta(m) for p in parts if (m := meta_path_for(p)).is_file()]
    named = {(m.get("suite_file"), m.get("suite_sha256")) for m in metas if m.get("suite_file")}
    if len(named) != 1:
        return None
    path_text, sha = named.pop()
    path = Path(path_text)
    if not path.is_file():
        return None
    try:
        suite = load_suite(path)
    except InputError:
        return None
    return grid_keys(suite, expand(suite)) if suite.sha256 == sha else None


def merge_command(
    inputs: Sequence[Path], out: Path, *, allow_mixed_devices: bool, suite_file: Path | None
) -> Merged:
    """`scfa-bench merge PARTS... --out RUN.csv`: merge and write; returns what was merged."""
    parts = collect_parts(inputs)
    if out.resolve() in {p.resolve() for p in parts}:
        raise InputError(f"--out {out}: is one of the parts")
    merged = merge(
        parts, allow_mixed_devices=allow_mixed_devices, expected=expected_keys(parts, suite_file)
    )
    write_merged(merged, out)
    return merged

"""The Markdown report of a quality CSV: per experiment, each setting's final value, its
difference from dense with the seed interval, and its time-to-quality speedup (definitions in
`quality_summary`); the runs that did not end ok; the figures.

Written as `README.md` in the output folder, next to the figures it links.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from scfa_bench.analysis.quality_frame import experiments, read_quality
from scfa_bench.analysis.quality_summary import (
    SettingSummary,
    interval_text,
    speedup_text,
    spread_text,
    summarise,
)
from scfa_bench.constants import WALL_CLOCK_WARNING
from scfa_bench.results.meta import meta_path_for

REPORT_NAME = "README.md"
METRIC_NAMES = {
    "val_bpb": "val bits per byte",
    "val_bits_per_token": "val bits per token",
    "val_accuracy": "val answer accuracy",
    "val_loss": "val loss (nats)",
}
_META_KEYS = (
    ("device_name", "card"),
    ("torch", "torch"),
    ("python", "python"),
    ("git_rev", "git revision"),
    ("suite_name", "suite"),
    ("started", "started"),
    ("finished", "finished"),
)
_MAX_ERROR_CHARS = 200


def quality_report(csv_path: str | Path, out_dir: str | Path) -> Path:
    """Write `README.md` (and its figures) for the quality CSV `csv_path` into `out_dir`."""
    from scfa_bench.analysis.quality_plots import quality_plots  # matplotlib only when drawing

    csv_path, out = Path(csv_path), Path(out_dir)
    frame = read_quality(csv_path)
    figures = quality_plots(csv_path, out)
    path = out / REPORT_NAME
    path.write_text(render_quality_report(frame, csv_path, figures), encoding="utf-8")
    return path


def render_quality_report(frame: pd.DataFrame, csv_path: Path, figures: list[Path]) -> str:
    parts = [f"# Quality: {csv_path.name}", _meta_section(csv_path)]
    for title, rows in experiments(frame):
        note = _device_note(rows)
        parts.append(f"## {title}\n\n" + note + settings_table(summarise(rows)))
    parts += [_failures_section(frame), _figures_section(figures), _definitions()]
    return "\n\n".join(p.rstrip() for p in parts if p and p.strip()) + "\n"


def settings_table(summaries: list[SettingSummary]) -> str:
    """One row per setting: seeds, final value, difference from dense, verdict, speedup."""
    metric = METRIC_NAMES.get(summaries[0].metric, summaries[0].metric) if summaries else ""
    header = [
        "setting",
        "seeds",
        f"final {metric}",
        "final val loss",
        "difference from dense",
        "seed interval of the difference",
        "verdict",
        "time-to-quality speedup",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for s in summaries:
        seeds = ", ".join(str(k) for k in sorted(s.finals)) or "-"
        if s.failed:
            seeds += " (" + ", ".join(f"seed {k} {v}" for k, v in sorted(s.failed.items())) + ")"
        losses = list(s.final_losses.values())
        interval = "-" if s.diff_interval is None else interval_text(s.diff_interval)
        lines.append(
            _row(
                [
                    s.setting,
                    seeds,
                    spread_text(list(s.finals.values())),
                    spread_text(losses),
                    "-" if s.diff is None or s.verdict == "reference" else f"{s.diff:+.4f}",
                    "-" if s.verdict == "reference" else interval,
                    s.verdict,
                    speedup_text(s.speedups),
                ]
            )
        )
    return "\n".join(lines)


def _device_note(rows: pd.DataFrame) -> str:
    """Training seconds compare only on one kind of machine: say when they do not."""
    if "device" not in rows.columns:
        return ""
    devices = sorted({str(d) for d in rows["device"].dropna() if str(d)})
    if len(devices) > 1:
        return (
            f"Warning: rows from {len(devices)} devices ({', '.join(devices)}): training seconds, "
            "and so time-to-quality, are not comparable between them.\n\n"
        )
    if devices and devices[0].lower().startswith("cpu"):
        return f"Warning: {WALL_CLOCK_WARNING}.\n\n"
    return ""


def _meta_section(csv_path: Path) -> str:
    meta_path = meta_path_for(csv_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "No `.meta.json` beside the CSV: environment and corpus unknown."
    if not isinstance(meta, dict):
        return ""
    lines = [f"- {label}: {meta[key]}" for key, label in _META_KEYS if meta.get(key)]
    for key, value in meta.items():
        if _is_fingerprint(value):
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
            lines.append(f"- {key} fingerprint: {shown}")
    return "\n".join(lines)


def _is_fingerprint(value: Any) -> bool:
    return isinstance(value, dict) and {"sha256", "bytes"} <= set(value)


def _failures_section(frame: pd.DataFrame) -> str:
    failed = frame[frame["status"] != "ok"]
    if failed.empty:
        return ""
    lines = ["## Evaluations not ok", "", _row(["setting", "seed", "step", "status", "error"])]
    lines.append(_row(["---"] * 5))
    for _, row in failed.sort_values(["setting", "seed", "step"]).iterrows():
        error = row.get("error", "")
        error = "" if not isinstance(error, str) else error[:_MAX_ERROR_CHARS]
        step = "" if _missing(row["step"]) else str(int(row["step"]))
        seed = "" if _missing(row["seed"]) else str(int(row["seed"]))
        lines.append(_row([row["setting"], seed, step, row["status"], error]))
    return "\n".join(lines)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _figures_section(figures: list[Path]) -> str:
    lines = ["## Figures", ""]
    lines += [f"![{path.stem.replace('_', ' ')}]({path.name})" for path in figures]
    return "\n".join(lines)


def _definitions() -> str:
    return (
        "## How to read this\n\n"
        "Final values are each run's last evaluation, averaged over seeds (min-max in brackets). "
        "The difference from dense is the mean of the setting minus the mean of dense; its seed "
        "interval is the range of the difference over every pair of a setting seed and a dense "
        "seed, and the verdict is *inside seed noise* when that interval contains 0. "
        "Time-to-quality, per seed: dense's final val loss is the target, and the speedup is "
        "dense's training seconds to its first evaluation at or below it divided by the "
        "setting's (*not reached* when no evaluation of the setting gets there); the mean over "
        "seeds is shown with its min-max."
    )


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

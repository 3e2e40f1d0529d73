"""A Markdown report of one run: environment, speedup tables, fraction of the limit,
approximations, clocks and throttling, stages, plots, failed rows.

The report is `README.md` in the output folder, next to the plots it embeds with relative
links, so the folder reads well on any git host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from scfa_bench.analysis import plot_plan, plots, report_sections, stats
from scfa_bench.analysis.density_bands import density_section
from scfa_bench.analysis.frame import REPORT_MODES, PreparedResults
from scfa_bench.analysis.model_report import model_steps_section
from scfa_bench.constants import WALL_CLOCK_WARNING
from scfa_bench.results.reader import Results

REPORT_NAME = "README.md"
_MAX_ERROR_CHARS = 300
# Meta keys shown in the environment table, in this order.
_ENV_KEYS = (
    ("device_name", "card"),
    ("driver", "driver"),
    ("cuda", "CUDA"),
    ("torch", "torch"),
    ("triton", "triton"),
    ("python", "python"),
    ("platform", "platform"),
    ("hostname", "host"),
    ("git_rev", "git revision"),
    ("kernels_hash", "kernels sha256"),
    ("hopper_kernels_hash", "Hopper kernels sha256"),
    ("scfa_bench_version", "scfa-bench"),
    ("suite_name", "suite"),
    ("suite_file", "suite file"),
    ("suite_sha256", "suite sha256"),
    ("shape", "shape"),
    ("model", "model"),
    ("timing", "timing"),
    ("baseline", "baseline"),
    ("started", "started"),
    ("finished", "finished"),
    ("argv", "command"),
)


def write_report(data: PreparedResults, out_dir: str | Path) -> Path:
    """Write `README.md` into `out_dir`, drawing any plot that is not there yet."""
    out = Path(out_dir)
    plot_files = plots.make_plots(data, out, only_missing=True)
    path = out / REPORT_NAME
    path.write_text(render_report(data, plot_files, out), encoding="utf-8")
    return path


def render_report(
    data: PreparedResults, plot_files: Sequence[plots.PlotFile], out_dir: Path
) -> str:
    """The report's Markdown text; plot links are relative to `out_dir`."""
    results, frame = data.results, data.frame
    parts = [
        _header(results, frame),
        _environment(results, frame),
        _speedup_section(frame, results.baseline, results.wall_clock),
        model_steps_section(frame, results.baseline),
        report_sections.limits_section(frame),
        report_sections.approximation_section(frame),
        density_section(frame),
        report_sections.telemetry_section(results, frame),
        report_sections.stages_section(frame),
        _plots_section(plot_files, out_dir),
        _failures_section(data.failed),
    ]
    return "\n\n".join(p.rstrip() for p in parts if p and p.strip()) + "\n"


def _header(results: Results, frame: pd.DataFrame) -> str:
    counts = frame["status"].value_counts()
    status_text = ", ".join(f"{n} {s}" for s, n in counts.items())
    card = results.device_name or "unknown card"
    return (
        f"# scfa-bench report: {results.suite_name}\n\n"
        f"Results `{results.path.name}` measured on **{card}**; speedups are over "
        f"`{results.baseline or 'n/a'}` at the same shape and mode. "
        f"{len(frame)} rows: {status_text}.\n\n"
        "Fraction of ideal = speedup x density (ideal speedup is 1 / density)."
        + _state_banner(results)
        + (f"\n\n> **Warning: {WALL_CLOCK_WARNING}.**" if results.wall_clock else "")
    )


_STATE_TEXT = {
    "incomplete": "the run stopped without recording its end (killed, or the machine went "
    "down); rows may be missing. `scfa-bench run SUITE --resume CSV` continues it.",
    "interrupted": "the run was interrupted (Ctrl-C); rows may be missing. "
    "`scfa-bench run SUITE --resume CSV` continues it.",
    "running": "the run was still going when this report was written; rows may be missing.",
    "failed": "the run stopped on an error; rows may be missing.",
}


def _state_banner(results: Results) -> str:
    """A warning when the run did not complete (from the meta's `state`)."""
    text = _STATE_TEXT.get(results.state)
    if text is None:
        return ""
    error = results.meta.get("error")
    detail = f" ({_cell(str(error))})" if results.state == "failed" and error else ""
    return f"\n\n> **This run is {results.state}**: {text}{detail}"


def _environment(results: Results, frame: pd.DataFrame) -> str:
    lines = ["## Environment", ""]
    # The rows' `timer` says how each was timed (the meta only what the suite asked for).
    clocks = f"| clocks | {_cell(report_sections.clocks_text(frame))} |"
    if not results.meta:
        lines += [f"No meta file found beside `{results.path.name}`.", "", "| | |", "|---|---|"]
        return "\n".join([*lines, clocks])
    lines += ["| | |", "|---|---|", f"| run state | {results.state} |"]
    for key, label in _ENV_KEYS:
        if key in results.meta:
            lines.append(f"| {label} | {_cell(_format_meta(key, results.meta[key]))} |")
    return "\n".join([*lines, clocks])


def _format_meta(key: str, value: Any) -> str:
    if value is None or value == "":
        return "n/a"
    if key == "shape" and isinstance(value, dict):
        return (
            f"B={value.get('batch')} H={value.get('heads')} D={value.get('head_dim')} "
            f"{value.get('dtype')}"
        )
    if key == "timing" and isinstance(value, dict) and "warmup_ms" in value:
        graphs = ", CUDA graphs where they can be captured" if value.get("cuda_graph") else ""
        return f"warm-up {value.get('warmup_ms')} ms, repetitions {value.get('rep_ms')} ms{graphs}"
    if isinstance(value, list | tuple):
        return "`" + " ".join(str(v) for v in value) + "`"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _speedup_section(frame: pd.DataFrame, baseline: str | None, wall_clock: bool) -> str:
    lines = ["## Speedups", ""]
    if wall_clock:
        lines += [f"Warning: {WALL_CLOCK_WARNING}; these ratios compare interpreter runs.", ""]
    if baseline is None:
        lines.append("No baseline implementation is named in the results; no speedups.")
        return "\n".join(lines)
    tables = 0
    groups = plot_plan.shape_groups(frame)
    for group in groups:
        rows_of_shape = plot_plan.group_rows(frame, group)
        shape_label = f", {group.label()}" if len(groups) > 1 else ""
        for mode in REPORT_MODES:
            rows = rows_of_shape[rows_of_shape["mode"] == mode]
            for impl in sorted(rows["impl"].unique()):
                axis = plot_plan.impl_axis(rows, impl)
                if axis is None:
                    continue
                lines += [
                    f"### {impl}, {mode}{shape_label}",
                    "",
                    _axis_table(rows[rows["impl"] == impl], axis),
                    "",
                ]
                tables += 1
            dense = rows[
                rows["n_buckets"].isna() & rows["drop_rate"].isna() & (rows["impl"] != baseline)
            ]
            if not dense.empty:
                lines += [
                    f"### dense implementations, {mode}{shape_label}",
                    "",
                    _dense_table(dense),
                    "",
                ]
                tables += 1
    if tables == 0:
        lines.append("No rows to tabulate.")
    return "\n".join(lines)


def _axis_table(rows: pd.DataFrame, axis: str) -> str:
    """seq_len down, axis values across; cells 'speedup (fraction of ideal)' or the status."""
    values = sorted(rows[axis].dropna().unique())
    header = ["T"] + [plot_plan.axis_label(axis, v) for v in values]
    lines = [_row(header), _row(["---:"] * len(header))]
    for seq_len in sorted(rows["seq_len"].unique()):
        cells = [str(seq_len)]
        for value in values:
            match = rows[(rows["seq_len"] == seq_len) & (rows[axis] == value)]
            cells.append(_speedup_cell(match, with_ideal=True))
        lines.append(_row(cells))
    return "\n".join(lines)


def _dense_table(rows: pd.DataFrame) -> str:
    impls = sorted(rows["impl"].unique())
    lines = [_row(["T", *impls]), _row(["---:"] * (len(impls) + 1))]
    for seq_len in sorted(rows["seq_len"].unique()):
        cells = [str(seq_len)]
        for impl in impls:
            match = rows[(rows["seq_len"] == seq_len) & (rows["impl"] == impl)]
            cells.append(_speedup_cell(match, with_ideal=False))
        lines.append(_row(cells))
    return "\n".join(lines)


def _speedup_cell(match: pd.DataFrame, *, with_ideal: bool) -> str:
    if match.empty:
        return ""
    row = match.iloc[0]
    if row["status"] != "ok":
        return f"*{row['status']}*"
    speedup = row["speedup"]
    if pd.isna(speedup):
        return "n/a"
    # Two decimals read best; tiny CPU-interpreter ratios would all print as 0.00.
    text = f"{speedup:.2f}x" if speedup >= 0.1 else f"{speedup:.2g}x"
    density = row["density"]
    if with_ideal and not pd.isna(density) and density > 0:
        fraction = stats.fraction_of_ideal(float(speedup), float(density))
        text += f" ({fraction:.0%})" if fraction >= 0.01 else " (<1%)"
    return text


def _plots_section(plot_files: Sequence[plots.PlotFile], out_dir: Path) -> str:
    lines = ["## Plots", ""]
    if not plot_files:
        lines.append("No plots: no row has data to draw.")
        return "\n".join(lines)
    for plot in plot_files:
        title = plot.spec.title.replace("\n", " — ")
        png = _relative_link(plot.png, out_dir)
        svg = _relative_link(plot.svg, out_dir)
        lines += [f"### {title}", "", f"![{title}]({png})", "", f"[SVG]({svg})", ""]
    return "\n".join(lines)


def _failures_section(failed: pd.DataFrame) -> str:
    lines = ["## Failed rows", ""]
    if failed.empty:
        lines.append("None: every row has status ok.")
        return "\n".join(lines)
    lines += [
        f"{len(failed)} row(s) did not produce a timing; they are left out of tables and plots.",
        "",
        _row(["impl", "mode", "T", "n_buckets", "drop_rate", "status", "message"]),
        _row(["---"] * 7),
    ]
    for _, row in failed.iterrows():
        lines.append(
            _row(
                [
                    row["impl"],
                    row["mode"],
                    str(row["seq_len"]),
                    _optional(row["n_buckets"], integer=True),
                    _optional(row["drop_rate"], integer=False),
                    f"**{row['status']}**",
                    _truncate(str(row["error"] or "")),
                ]
            )
        )
    return "\n".join(lines)


def _relative_link(path: Path, out_dir: Path) -> str:
    try:
        rel = path.resolve().relative_to(out_dir.resolve())
    except ValueError:
        rel = path
    return rel.as_posix()


def _optional(value: Any, *, integer: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(int(value)) if integer else f"{value:g}"


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _cell(text: str) -> str:
    """Table-safe Markdown: no pipes or line breaks inside a cell."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"

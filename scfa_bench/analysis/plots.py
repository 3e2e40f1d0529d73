"""Draw the planned figures (`plot_plan`) of a run: runtime, speedup, speedup heatmaps,
fraction of ideal, as PNG and SVG. Figures are
drawn on `matplotlib.figure.Figure` objects directly (Agg canvas), never through pyplot,
so nothing global is switched and nothing needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from scfa_bench.analysis import stats
from scfa_bench.analysis.frame import PreparedResults
from scfa_bench.analysis.plot_plan import (
    FigureSpec,
    axis_label,
    drawable_rows,
    figure_rows,
    group_rows,
    impl_axis,
    plan_figures,
    seq_len_label,
)
from scfa_bench.constants import WALL_CLOCK_WARNING

# A value range wider than this many times gets a log axis.
_LOG_RANGE = 10.0
_DPI = 110


@dataclass(frozen=True)
class PlotFile:
    spec: FigureSpec
    png: Path
    svg: Path


def make_plots(
    data: PreparedResults, out_dir: str | Path, *, only_missing: bool = False
) -> list[PlotFile]:
    """Render every planned figure as PNG and SVG into `out_dir`.

    With `only_missing`, figures whose PNG and SVG both exist already are not redrawn.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[PlotFile] = []
    for spec in plan_figures(data):
        png, svg = out / spec.png_name, out / spec.svg_name
        if not (only_missing and png.is_file() and svg.is_file()):
            _render(data, spec, png, svg)
        files.append(PlotFile(spec, png, svg))
    return files


def _render(data: PreparedResults, spec: FigureSpec, png: Path, svg: Path) -> None:
    rows = group_rows(data.frame, spec.group)
    rows = rows[rows["mode"] == spec.mode]
    drawable = drawable_rows(spec.kind, rows, data.baseline)
    left_out = figure_rows(spec.kind, rows, data.baseline)
    left_out = left_out[left_out["status"] != "ok"]
    if spec.kind.startswith("heatmap_"):
        fig = _heatmap_figure(drawable, spec.kind.removeprefix("heatmap_"), data.baseline)
    elif spec.kind == "speed_vs_density":
        fig = density_figure(drawable, data.baseline)
    else:
        fig = _line_figure(spec.kind, drawable, data.baseline)
    wall_clock = data.results.wall_clock
    fig.suptitle(spec.title + (f"\n({WALL_CLOCK_WARNING})" if wall_clock else ""), fontsize=11)
    footnote = _footnote(left_out, data.path)
    if wall_clock:
        footnote = f"Warning: {WALL_CLOCK_WARNING}. {footnote}"
    fig.text(0.01, 0.005, footnote, fontsize=7, va="bottom", color="0.3")
    # Constrained layout places titles, legends and colorbars; keep a strip for the footnote.
    fig.get_layout_engine().set(rect=(0, 0.035, 1, 0.965))
    FigureCanvasAgg(fig)
    fig.savefig(png, dpi=_DPI)
    # Text stays text in the SVG: searchable, selectable, smaller.
    with rc_context({"svg.fonttype": "none"}):
        fig.savefig(svg)


def _footnote(left_out: pd.DataFrame, csv_path: Path) -> str:
    source = f"source: {csv_path.name}"
    if left_out.empty:
        return f"All rows ok. {source}"
    by_status = left_out["status"].value_counts().sort_index()
    detail = ", ".join(f"{n} {status}" for status, n in by_status.items())
    return f"{len(left_out)} row(s) with status other than ok left out ({detail}). {source}"


def _panel_grid(n_panels: int, width: float = 5.2, height: float = 3.9) -> tuple[Figure, list]:
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _line_figure(kind: str, rows: pd.DataFrame, baseline: str | None) -> Figure:
    impls = sorted(rows["impl"].unique())
    sparse = [i for i in impls if impl_axis(rows, i) is not None]
    dense = [i for i in impls if impl_axis(rows, i) is None]
    panels = sparse or ["dense implementations"]
    fig, axes = _panel_grid(len(panels))
    value_col = {"runtime": "ms_median", "speedup": "speedup"}.get(kind, kind)
    rows = rows.assign(fraction_of_ideal=stats.fraction_of_ideal(rows["speedup"], rows["density"]))
    plotted: list[float] = []  # every panel's values: they share one y scale
    for ax, panel in zip(axes, panels, strict=True):
        if panel in sparse:
            axis = impl_axis(rows, panel)
            assert axis is not None
            impl_rows = rows[rows["impl"] == panel]
            values = sorted(impl_rows[axis].dropna().unique())
            cmap = colormaps["viridis"]
            for n, value in enumerate(values):
                color = cmap(n / max(len(values) - 1, 1) * 0.9)
                line = impl_rows[impl_rows[axis] == value]
                plotted += _draw_line(ax, line, value_col, axis_label(axis, value), color, "-")
            ax.set_title(panel, fontsize=10)
        if kind not in ("fraction_of_ideal", "fraction_of_limit"):
            dense_colors = colormaps["tab10"]
            for n, impl in enumerate(dense):
                line = rows[rows["impl"] == impl]
                label = f"{impl} (dense)"
                plotted += _draw_line(ax, line, value_col, label, dense_colors(n % 10), "--")
    # One y scale for the whole figure: panels side by side must read the same way.
    log_y = _wants_log_axis(kind, plotted)
    for ax in axes:
        _style_line_axes(ax, kind, baseline, log_y)
    # One y range too: a panel whose values span less than a tick step would show no tick.
    low = min(ax.get_ylim()[0] for ax in axes)
    high = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(low, high)
    return fig


def _draw_line(
    ax: Axes, line: pd.DataFrame, value_col: str, label: str, color, style: str
) -> list[float]:
    line = line.sort_values("seq_len")
    x = line["seq_len"].to_numpy(dtype=float)
    y = line[value_col].to_numpy(dtype=float)
    ax.plot(x, y, style, marker="o", markersize=3.5, color=color, label=label, linewidth=1.5)
    plotted = y.tolist()
    if value_col == "ms_median":
        lo, hi = line["ms_q20"].to_numpy(dtype=float), line["ms_q80"].to_numpy(dtype=float)
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
        plotted += lo.tolist() + hi.tolist()
    return plotted


def _wants_log_axis(kind: str, plotted: Sequence[float]) -> bool:
    """A log y axis when the positive values (and the 1x line of ratio plots) span more than
    `_LOG_RANGE` times."""
    finite = [v for v in plotted if v > 0 and math.isfinite(v)]
    if kind != "runtime":
        finite.append(1.0)
    return bool(finite) and max(finite) / min(finite) > _LOG_RANGE


def readable_tick(value: float, _pos: object = None) -> str:
    """A log-axis tick as people read it: '1024', '2', '0.5', '0.001', and '1/1024' rather than
    '0.000976562' for a power of two whose decimal needs more than three digits."""
    if not math.isfinite(value) or value <= 0:
        return ""
    if value >= 1:
        return str(int(value)) if value == int(value) and value < 1e6 else f"{value:.3g}"
    text = f"{value:.3g}"
    if float(text) == value and "e" not in text:
        return text
    inverse = 1.0 / value
    if abs(inverse - round(inverse)) <= 1e-9 * inverse:
        return f"1/{round(inverse)}"
    return text


def _style_line_axes(ax: Axes, kind: str, baseline: str | None, log_y: bool) -> None:
    _seq_len_axis(ax, ax.get_lines())
    if kind == "runtime":
        ax.set_ylabel("time (ms, median; band q20-q80)")
    elif kind == "speedup":
        ax.axhline(1.0, color="black", linewidth=1, linestyle=":", label="1x (no speedup)")
        ax.set_ylabel(f"speedup over {baseline or 'baseline'} (x)")
    elif kind == "fraction_of_limit":
        ax.axhline(
            1.0, color="black", linewidth=1, linestyle=":", label="limit (dense on the work)"
        )
        ax.set_ylabel("limit time / measured time")
    else:
        ax.axhline(1.0, color="black", linewidth=1, linestyle=":", label="ideal (1 / density)")
        ax.set_ylabel("measured / ideal speedup")
    if log_y:
        # Powers of two with plain labels (1/8, 0.25, 0.5, 1, 2, 4, ...) for times and ratios.
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(FuncFormatter(readable_tick))
        ax.yaxis.set_minor_formatter(NullFormatter())
    elif kind in ("fraction_of_ideal", "fraction_of_limit"):
        ax.set_ylim(bottom=0)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _seq_len_axis(ax: Axes, lines) -> None:
    seq_lens = sorted({int(x) for line in lines for x in line.get_xdata() if x > 0})
    ax.set_xscale("log", base=2)
    if seq_lens:
        ax.set_xticks(seq_lens, [seq_len_label(t) for t in seq_lens])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("sequence length T (tokens, log2)")


def density_figure(rows: pd.DataFrame, baseline: str | None) -> Figure:
    """One panel per sequence length: each method's speedup against the fraction of causal
    pairs it attends (its own measured density), the choice a user makes between methods."""
    seq_lens = sorted(int(t) for t in rows["seq_len"].unique())
    fig, axes = _panel_grid(len(seq_lens))
    impls = sorted(rows["impl"].unique())
    colors, markers = colormaps["tab10"], "osD^v<>ph*"
    for ax, seq_len in zip(axes, seq_lens, strict=True):
        at = rows[rows["seq_len"] == seq_len]
        for n, impl in enumerate(impls):
            points = at[at["impl"] == impl].sort_values("density")
            if points.empty:
                continue
            style = {"color": colors(n % 10), "marker": markers[n % len(markers)]}
            ax.plot(points["density"], points["speedup"], "-", label=impl, linewidth=1, **style)
        ax.axhline(
            1.0, color="black", linewidth=1, linestyle=":", label=f"{baseline or 'baseline'}"
        )
        ax.set_title(f"sequence length T = {seq_len_label(seq_len)}", fontsize=10)
    for ax in axes:  # one scale for every panel: log-log, readable ticks
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(readable_tick))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("density (fraction of causal pairs attended, log2)")
        ax.set_ylabel(f"speedup over {baseline or 'baseline'} (x)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return fig


def _heatmap_figure(rows: pd.DataFrame, axis: str, baseline: str | None) -> Figure:
    impls = sorted(rows["impl"].unique())
    fig, axes = _panel_grid(len(impls), width=5.6, height=4.2)
    grids = {
        impl: rows[rows["impl"] == impl].pivot_table(
            index=axis, columns="seq_len", values="speedup", aggfunc="median"
        )
        for impl in impls
    }
    all_values = np.concatenate([g.to_numpy(dtype=float).ravel() for g in grids.values()])
    all_values = all_values[np.isfinite(all_values) & (all_values > 0)]
    # Symmetric log colour scale centred on 1x: red slower, blue faster.
    spread = max(float(np.max(all_values)), 1.0 / float(np.min(all_values)), 1.05)
    norm = LogNorm(vmin=1.0 / spread, vmax=spread)
    image = None
    for ax, impl in zip(axes, impls, strict=True):
        grid = grids[impl].sort_index().sort_index(axis=1)
        data = grid.to_numpy(dtype=float)
        ax.set_facecolor("0.85")  # grey = no ok measurement at that cell
        image = ax.imshow(
            np.ma.masked_invalid(data), cmap="RdBu", norm=norm, aspect="auto", origin="lower"
        )
        for (r, c), value in np.ndenumerate(data):
            if math.isfinite(value):
                strong = abs(math.log(value)) > 0.6 * math.log(spread)
                ax.text(
                    c,
                    r,
                    f"{value:.3g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if strong else "black",
                )
        ax.set_xticks(range(len(grid.columns)), [seq_len_label(int(t)) for t in grid.columns])
        ax.set_yticks(range(len(grid.index)), [axis_label(axis, v) for v in grid.index])
        ax.set_xlabel("sequence length T (tokens)")
        ax.set_ylabel("bucket count" if axis == "n_buckets" else "drop rate p")
        ax.set_title(impl, fontsize=10)
    assert image is not None
    colorbar = fig.colorbar(image, ax=axes, label=f"speedup over {baseline or 'baseline'} (x)")
    # A log colour scale: the same powers of two and plain labels as the log line plots.
    colorbar.locator = LogLocator(base=2)
    colorbar.formatter = FuncFormatter(readable_tick)
    colorbar.minorformatter = NullFormatter()
    return fig

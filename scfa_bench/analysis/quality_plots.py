"""The quality figures: validation loss against tokens seen, against training seconds, and the
loss at each position of the sequence at the last evaluation. One panel per experiment (task,
corpus, length, model), one line per setting: the mean over seeds, with a band from the lowest
to the highest seed. Drawn on `Figure` objects (Agg canvas), never through pyplot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scfa_bench.analysis.quality_frame import DENSE_SETTING, experiments, ok_rows, read_quality

FIGURES = {
    "loss_vs_tokens.png": ("tokens", "tokens seen"),
    "loss_vs_seconds.png": ("train_seconds", "training time (s)"),
}
POSITION_FIGURE = "loss_by_position.png"
_DPI = 110


def quality_plots(csv_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the three figures of a quality CSV into `out_dir`; their paths."""
    frame = read_quality(csv_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = [(name, curve_figure(frame, x, label)) for name, (x, label) in FIGURES.items()]
    figures.append((POSITION_FIGURE, position_figure(frame)))
    paths = []
    for name, figure in figures:
        FigureCanvasAgg(figure)
        figure.savefig(out / name, dpi=_DPI)
        paths.append(out / name)
    return paths


def curve_figure(frame: pd.DataFrame, x: str, x_label: str) -> Figure:
    """Val loss against column `x`, a panel per experiment and a line per setting."""
    groups = _groups(frame)
    figure, axes = _panels(len(groups))
    for ax, (title, rows) in zip(axes, groups, strict=True):
        for n, (setting, runs) in enumerate(_settings(rows)):
            by_step = runs.groupby("step").agg(
                x=(x, "mean"),
                mean=("val_loss", "mean"),
                low=("val_loss", "min"),
                high=("val_loss", "max"),
                seeds=("seed", "nunique"),
            )
            _draw(ax, setting, n, by_step["x"], by_step, by_step["seeds"].max() > 1)
        _style(ax, title, x_label, "val loss (nats)")
    figure.suptitle(f"Validation loss against {x_label}")
    return figure


def position_figure(frame: pd.DataFrame) -> Figure:
    """Mean val loss per position bin at each run's last evaluation, a line per setting."""
    groups = _groups(frame)
    figure, axes = _panels(len(groups))
    for ax, (title, rows) in zip(axes, groups, strict=True):
        for n, (setting, runs) in enumerate(_settings(rows)):
            curves = _last_position_curves(runs)
            if not curves:
                continue
            stacked = np.array(curves)
            seq_len = runs["seq_len"].iloc[0] if "seq_len" in runs.columns else float("nan")
            bins = stacked.shape[1]
            # Bin centres in tokens when the length is known, else the bin's index.
            if math.isfinite(seq_len):
                x = (np.arange(bins) + 0.5) * seq_len / bins
            else:
                x = np.arange(bins)
            band = pd.DataFrame(
                {"mean": stacked.mean(0), "low": stacked.min(0), "high": stacked.max(0)}
            )
            _draw(ax, setting, n, pd.Series(x), band, len(curves) > 1)
        x_label = "position in the sequence" if "seq_len" in rows.columns else "position bin"
        _style(ax, title, x_label, "val loss (nats)")
    figure.suptitle("Validation loss by position (last evaluation)")
    return figure


def _last_position_curves(runs: pd.DataFrame) -> list[list[float]]:
    """Each seed's loss_by_position at its last evaluation that has one of the common length."""
    if "loss_by_position" not in runs.columns:
        return []
    curves = []
    for _, run in runs.groupby("seed"):
        filled = run[run["loss_by_position"].notna()].sort_values("step", kind="stable")
        if filled.empty:
            continue
        try:
            values = [float(v) for v in json.loads(str(filled["loss_by_position"].iloc[-1]))]
        except (ValueError, TypeError):
            continue
        curves.append(values)
    lengths = {len(c) for c in curves}
    return curves if len(lengths) == 1 and 0 not in lengths else []


def _groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The experiments of the ok rows; one empty panel when nothing evaluated ok."""
    rows = ok_rows(frame)
    return experiments(rows) or [("no ok evaluation", rows)]


def _settings(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Dense first (the reference), then the others by name."""
    groups = list(rows.groupby("setting"))
    return sorted(groups, key=lambda g: (g[0] != DENSE_SETTING, g[0]))


def _draw(ax: Axes, setting: str, n: int, x: pd.Series, band: pd.DataFrame, spread: bool) -> None:
    dense = setting == DENSE_SETTING
    color = "black" if dense else colormaps["tab10"]((n - 1) % 10)
    xs = np.asarray(x, dtype=float)
    ax.plot(xs, band["mean"].to_numpy(), "--" if dense else "-", color=color, label=setting)
    if spread:
        ax.fill_between(xs, band["low"].to_numpy(), band["high"].to_numpy(), color=color, alpha=0.2)


def _style(ax: Axes, title: str, x_label: str, y_label: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)


def _panels(n_panels: int) -> tuple[Figure, list[Axes]]:
    n_panels = max(n_panels, 1)
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    figure = Figure(figsize=(5.6 * ncols, 4.0 * nrows + 0.6), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return figure, axes[:n_panels]

"""Figures: every planned file is written, is a real image, and only figures with data exist."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import typer
from matplotlib import image as mpimg
from matplotlib.backends.backend_agg import FigureCanvasAgg
from typer.testing import CliRunner

from scfa_bench.analysis import plot_plan, plots
from scfa_bench.analysis.frame import PreparedResults, prepare
from scfa_bench.cli.analysis_commands import register
from scfa_bench.results.reader import read_results

from ..results_factory import H100, make_row, set_status, suite_rows, write_results


def load(path: Path) -> PreparedResults:
    return prepare(read_results(path))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"


def assert_real_png(path: Path) -> None:
    """PNG signature, a plausible size, and more than a blank canvas."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"
    pixels = mpimg.imread(path)
    height, width = pixels.shape[:2]
    assert width >= 400 and height >= 300
    colours = np.unique(pixels[::2, ::2, :3].reshape(-1, 3), axis=0)  # subsampled: fast
    assert len(colours) > 50, f"{path} has only {len(colours)} colours"
    # Ink covers a real share of the canvas (lines, text, heatmap cells).
    not_white = np.any(pixels[..., :3] < 0.95, axis=-1).mean()
    assert not_white > 0.02, f"{path} is almost blank ({not_white:.1%} ink)"


def svg_text(path: Path) -> str:
    """All text in an SVG (fonts are kept as text); parsing fails on invalid XML."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG_NS}svg"
    return " ".join(t for el in root.iter(f"{SVG_NS}text") for t in el.itertext())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[plots.PlotFile]]:
    """One realistic run (all modes, both kernels, some failures), plotted once."""
    tmp = tmp_path_factory.mktemp("plots")
    rows = suite_rows(
        seq_lens=(1024, 2048, 4096), n_buckets=(2, 8, 32), drop_rates=(0.2, 0.8), with_limits=True
    )
    set_status(rows, "oom", "CUDA out of memory", impl="scfa_hash", n_buckets=32, seq_len=4096)
    set_status(rows, "incorrect", "rel err 0.5", impl="scfa_qk", drop_rate=0.8, seq_len=1024)
    csv = write_results(tmp / "run.csv", rows)
    return csv, plots.make_plots(load(csv), tmp / "out")


def _full_run_stems() -> set[str]:
    return {
        f"{kind}_{plot_plan.mode_slug(mode)}"
        for kind in plot_plan.KINDS
        for mode in ("fwd", "bwd", "fwd+bwd")
    }


def test_every_figure_of_a_full_run_is_planned(full_run) -> None:
    _, files = full_run
    assert {f.spec.stem for f in files} == _full_run_stems()
    # Report order: fwd+bwd first.
    assert files[0].spec.mode == "fwd+bwd"


def test_every_plot_file_is_a_valid_nontrivial_image(full_run) -> None:
    _, files = full_run
    assert {f.spec.stem for f in files} == _full_run_stems()  # the loop below checks them all
    for plot_file in files:
        assert_real_png(plot_file.png)
        text = svg_text(plot_file.svg)
        assert plot_file.svg.stat().st_size > 5_000
        assert "sequence length" in text


def test_titles_name_card_dtype_and_shape(full_run) -> None:
    _, files = full_run
    assert {f.spec.stem for f in files} == _full_run_stems()  # the loop below checks them all
    for plot_file in files:
        assert H100 in plot_file.spec.title
        assert "bf16, B=4 H=48 D=64" in plot_file.spec.title
        text = svg_text(plot_file.svg)
        assert H100 in text and plot_file.spec.mode in text


def test_footnote_counts_rows_left_out(full_run) -> None:
    _, files = full_run
    by_stem = {f.spec.stem: f for f in files}
    # Runtime (fwd+bwd) sees both failures of that mode; the bucket heatmap only the oom.
    runtime = svg_text(by_stem["runtime_fwd-bwd"].svg)
    assert "2 row(s) with status other than ok left out (1 incorrect, 1 oom)" in runtime
    heatmap = svg_text(by_stem["heatmap_n_buckets_fwd-bwd"].svg)
    assert "1 row(s) with status other than ok left out (1 oom)" in heatmap


def test_heatmap_annotates_speedups_from_the_csv(full_run) -> None:
    csv, files = full_run
    by_stem = {f.spec.stem: f for f in files}
    frame = load(csv).frame
    row = frame[
        (frame["impl"] == "scfa_hash")
        & (frame["n_buckets"] == 8)
        & (frame["seq_len"] == 2048)
        & (frame["mode"] == "fwd")
    ].iloc[0]
    assert f"{row['speedup']:.3g}" in svg_text(by_stem["heatmap_n_buckets_fwd"].svg)


def test_figures_without_data_are_skipped(tmp_path: Path) -> None:
    # Hash kernel and dense baselines only, fwd only: no drop-rate heatmap, no other modes.
    rows = [r for r in suite_rows(seq_lens=(256, 512), modes=("fwd",)) if r["impl"] != "scfa_qk"]
    results = load(write_results(tmp_path / "hash.csv", rows))
    stems = {spec.stem for spec in plot_plan.plan_figures(results)}
    assert stems == {
        "runtime_fwd",
        "speedup_fwd",
        "heatmap_n_buckets_fwd",
        "fraction_of_ideal_fwd",
    }


def test_dense_only_run_gets_runtime_and_speedup_only(tmp_path: Path) -> None:
    rows = [r for r in suite_rows(seq_lens=(256, 512), modes=("fwd",)) if r["impl"] != "scfa_qk"]
    rows = [r for r in rows if r["impl"] != "scfa_hash"]
    results = load(write_results(tmp_path / "dense.csv", rows))
    files = plots.make_plots(results, tmp_path / "out")
    assert {f.spec.kind for f in files} == {"runtime", "speedup"}
    for plot_file in files:
        assert_real_png(plot_file.png)


def test_all_failed_rows_give_no_figures(tmp_path: Path) -> None:
    rows = [make_row(status="error", error="boom", ms_median="", ms_q20="", ms_q80="")]
    results = load(write_results(tmp_path / "failed.csv", rows))
    assert plots.make_plots(results, tmp_path / "out") == []
    assert not list((tmp_path / "out").iterdir())


def test_speedups_are_computed_when_the_csv_leaves_them_empty(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(256, 512), n_buckets=(4,), drop_rates=(), modes=("fwd",))
    for row in rows:
        row["speedup"] = ""
    results = load(write_results(tmp_path / "nospeedup.csv", rows))
    kinds = {spec.kind for spec in plot_plan.plan_figures(results)}
    assert {"speedup", "heatmap_n_buckets", "fraction_of_ideal"} <= kinds


def test_several_shapes_get_one_set_of_figures_each(tmp_path: Path) -> None:
    small = suite_rows(seq_lens=(256,), n_buckets=(4,), drop_rates=(), modes=("fwd",))
    other = [{**r, "head_dim": 128, "dtype": "fp16"} for r in small]
    results = load(write_results(tmp_path / "shapes.csv", small + other))
    stems = {spec.stem for spec in plot_plan.plan_figures(results)}
    assert "runtime_fwd_B4-H48-D64-bf16" in stems
    assert "runtime_fwd_B4-H48-D128-fp16" in stems


def test_only_missing_does_not_redraw(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(256, 512), n_buckets=(4,), drop_rates=(), modes=("fwd",))
    results = load(write_results(tmp_path / "run.csv", rows))
    first = plots.make_plots(results, tmp_path / "out")
    os.utime(first[0].png, (1_000_000, 1_000_000))
    first[1].svg.unlink()
    again = plots.make_plots(results, tmp_path / "out", only_missing=True)
    assert [f.png for f in again] == [f.png for f in first]
    assert first[0].png.stat().st_mtime == 1_000_000  # kept
    assert first[1].svg.is_file()  # redrawn


def test_cli_plot_writes_to_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = suite_rows(seq_lens=(256, 512), n_buckets=(4,), drop_rates=(), modes=("fwd",))
    csv = write_results(tmp_path / "results" / "smoke-20260101-000000.csv", rows)
    monkeypatch.chdir(tmp_path)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["plot", str(csv)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "reports" / "smoke-20260101-000000"
    kinds = ("runtime", "speedup", "heatmap_n_buckets", "fraction_of_ideal")
    assert {p.name for p in out.glob("*.png")} == {f"{kind}_fwd.png" for kind in kinds}
    assert {p.name for p in out.glob("*.svg")} == {f"{kind}_fwd.svg" for kind in kinds}


def test_cli_plot_exit_2_on_bad_input(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2
    assert "not found" in result.stderr


# A log tick people can read: an integer, a short decimal, or 1/N (not 0.000976562, 10^-3).
READABLE_TICK = re.compile(r"^(\d{1,7}|\d+\.\d{1,4}|0\.0\d{0,3}|1/\d+)$")


def _drawn_line_figure(kind: str, frame) -> list:
    figure = plots._line_figure(kind, frame, "sdpa_cudnn")
    FigureCanvasAgg(figure).draw()
    return [ax for ax in figure.axes if ax.get_visible()]


@pytest.mark.parametrize("kind", ["speedup", "runtime"])
def test_log_axes_are_shared_by_all_panels_and_read_plainly(tmp_path: Path, kind: str) -> None:
    rows = suite_rows(seq_lens=(256, 512, 1024), n_buckets=(2, 4), drop_rates=(0.2, 0.5))
    frame = load(write_results(tmp_path / "run.csv", rows)).frame
    frame = frame[frame["mode"] == "fwd"].copy()
    # Hash-sparse speedups stay within 2x of 1 (a linear panel on its own); the QK-sparse
    # ones fall to 1/2048 (a log panel): the figure must pick one scale for both.
    hash_rows, qk_rows = frame["impl"] == "scfa_hash", frame["impl"] == "scfa_qk"
    frame.loc[hash_rows, "speedup"] = 1.5
    frame.loc[qk_rows, "speedup"] = np.geomspace(2.0**-11, 2.0, qk_rows.sum())
    frame.loc[qk_rows, ["ms_median", "ms_q20", "ms_q80"]] = 2.0**-10
    axes = _drawn_line_figure(kind, frame)
    assert len(axes) == 2
    assert [ax.get_yscale() for ax in axes] == ["log", "log"]
    assert {ax.get_xscale() for ax in axes} == {"log"}
    assert len({ax.get_ylim() for ax in axes}) == 1, "panels read on different y ranges"
    for ax in axes:
        low, high = ax.get_ylim()
        ticks = ax.get_yticklabels()
        labels = [
            t.get_text() for t in ticks if t.get_text() and low <= t.get_position()[1] <= high
        ]
        assert len(labels) >= 2, "a log axis with fewer than two visible tick labels"
        unreadable = [text for text in labels if not READABLE_TICK.match(text)]
        assert not unreadable, f"{ax.get_title()}: {unreadable}"


def test_narrow_ranges_keep_every_panel_linear(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(256, 512), n_buckets=(2, 4), drop_rates=(0.2, 0.5))
    frame = load(write_results(tmp_path / "run.csv", rows)).frame
    frame = frame[frame["mode"] == "fwd"].copy()
    frame.loc[frame["impl"].isin(["scfa_hash", "scfa_qk"]), "speedup"] = 1.5
    axes = _drawn_line_figure("speedup", frame)
    assert [ax.get_yscale() for ax in axes] == ["linear", "linear"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(2.0**-10, "1/1024"), (0.5, "0.5"), (0.0625, "0.0625"), (1.0, "1"), (4.0, "4"),
     (0.001, "0.001"), (2048.0, "2048"), (1.5, "1.5")],
)  # fmt: skip
def test_readable_tick(value: float, text: str) -> None:
    assert plots.readable_tick(value) == text


def test_heatmap_colour_scale_reads_plainly(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(256, 512), n_buckets=(2, 32), drop_rates=(), modes=("fwd",))
    frame = load(write_results(tmp_path / "run.csv", rows)).frame
    figure = plots._heatmap_figure(frame[frame["n_buckets"].notna()], "n_buckets", "sdpa_cudnn")
    FigureCanvasAgg(figure).draw()
    (colorbar,) = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    labels = [t.get_text() for t in colorbar.get_yticklabels() if t.get_text()]
    assert "1" in labels and "2" in labels and "0.5" in labels
    assert all(READABLE_TICK.match(text) for text in labels), labels

"""The peers' view: the fastest method per density band, and speed against density."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scfa_bench.analysis import plot_plan, plots
from scfa_bench.analysis.density_bands import density_section, fastest_by_band
from scfa_bench.analysis.frame import prepare
from scfa_bench.results.reader import read_results

from ..results_factory import make_row, write_results


def _peer_rows() -> list[dict]:
    dense = 30.0
    rows = []
    for seq_len, scale in ((16384, 1.0), (32768, 4.0)):
        common = {"seq_len": seq_len, "drop_rate": ""}
        for impl, nb, density, ms, kind in (
            ("scfa_hash", 8, 0.125, 5.0, "exact"),
            ("nsa", "", 0.10, 6.0, "approximate"),
            ("moba", "", 0.20, 4.0, "approximate"),
            ("adasplash", "", 0.40, 20.0, "approximate"),
            ("limit_hash", 8, 0.125, 1.0, "limit"),
            ("sdpa_cudnn", "", 1.0, dense, "exact"),
        ):
            rows.append(
                make_row(
                    impl=impl,
                    n_buckets=nb,
                    density=density,
                    ms_median=ms * scale,
                    ms_q20=ms * scale,
                    ms_q80=ms * scale,
                    speedup=dense / ms,
                    impl_kind=kind,
                    **common,
                )
            )
    return rows


def test_fastest_by_band_picks_the_fastest_ok_row_and_never_a_limit():
    table = fastest_by_band(pd.DataFrame(_peer_rows()))
    at16 = table[table["seq_len"] == 16384].set_index("band")["fastest"].to_dict()
    assert at16 == {
        "[0.05, 0.15)": "scfa_hash nb=8",
        "[0.15, 0.35)": "moba",
        "[0.35, 1]": "adasplash",
    }
    assert set(table["seq_len"]) == {16384, 32768}


def test_a_failed_row_does_not_win_its_band():
    rows = _peer_rows()
    for row in rows:
        if row["impl"] == "scfa_hash" and row["seq_len"] == 16384:
            row["status"] = "error"
    table = fastest_by_band(pd.DataFrame(rows))
    at16 = table[table["seq_len"] == 16384].set_index("band")["fastest"].to_dict()
    assert at16["[0.05, 0.15)"] == "nsa"


def test_the_section_appears_only_when_several_methods_measured_their_density():
    assert "| 16384 | [0.15, 0.35) | moba |" in density_section(pd.DataFrame(_peer_rows()))
    only_ours = [r for r in _peer_rows() if r["impl"] in ("scfa_hash", "sdpa_cudnn")]
    assert density_section(pd.DataFrame(only_ours)) == ""


def test_speed_against_density_is_one_log_log_figure_with_a_panel_per_length(tmp_path: Path):
    data = prepare(read_results(write_results(tmp_path / "peers.csv", _peer_rows())))
    specs = [s for s in plot_plan.plan_figures(data) if s.kind == "speed_vs_density"]
    assert [s.mode for s in specs] == ["fwd+bwd"]
    rows = plot_plan.drawable_rows("speed_vs_density", data.frame, data.baseline)
    assert set(rows["impl"]) == {"scfa_hash", "nsa", "moba", "adasplash"}  # no limit, no baseline
    fig = plots.density_figure(rows, data.baseline)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["sequence length T = 16k", "sequence length T = 32k"]
    for ax in axes:
        assert ax.get_xscale() == ax.get_yscale() == "log"
        labels = {line.get_label() for line in ax.get_lines()}
        assert {"scfa_hash", "nsa", "moba", "adasplash"} <= labels
    files = plots.make_plots(data, tmp_path / "out")
    assert any(f.spec.kind == "speed_vs_density" and f.png.stat().st_size > 10_000 for f in files)

"""Plots and reports of a CSV measured on two cards: one set per card, never mixed."""

from __future__ import annotations

from pathlib import Path

from scfa_bench.analysis import by_card
from scfa_bench.results.reader import read_results

from ..results_factory import H100, default_meta, suite_rows, write_results

A100 = "NVIDIA A100-SXM4-80GB"


def two_card_csv(tmp_path: Path) -> Path:
    rows = suite_rows(seq_lens=(1024, 2048), drop_rates=(), modes=("fwd",))
    slower = [dict(r, device=A100, ms_median=2 * r["ms_median"]) for r in rows]
    return write_results(
        tmp_path / "mixed.csv", rows + slower, default_meta(device_name=f"mixed: {A100}, {H100}")
    )


def test_split_by_card(tmp_path: Path) -> None:
    results = read_results(two_card_csv(tmp_path))
    parts = by_card.split_by_card(results)
    assert [card for card, _ in parts] == sorted([A100, H100])
    for card, rows in parts:
        assert {r.device for r in rows.rows} == {card} and rows.device_name == card
        assert len(rows.rows) == len(rows.lines) == len(results.rows) // 2
    one = read_results(write_results(tmp_path / "one.csv", suite_rows(seq_lens=(1024,))))
    assert [card for card, _ in by_card.split_by_card(one)] == [H100]


def test_report_and_plots_per_card(tmp_path: Path) -> None:
    results = read_results(two_card_csv(tmp_path))
    out = tmp_path / "report"
    index = by_card.write_report(results, out)
    assert index == out / "README.md"
    text = index.read_text()
    for card in (A100, H100):
        slug = by_card.card_slug(card)
        assert f"[{card}]({slug}/README.md)" in text
        card_report = (out / slug / "README.md").read_text()
        assert card in card_report
        other = H100 if card == A100 else A100
        assert other not in card_report
        assert list((out / slug).glob("*.png"))
    files = by_card.make_plots(results, tmp_path / "plots")
    assert {f.png.parent.name for f in files} == {"nvidia-a100-sxm4-80gb", "nvidia-h100-80gb-hbm3"}

"""Plots and reports of results measured on several cards (parts merged with
`--allow-mixed-devices`): one set per card, so two cards' timings never share an axis or a
speedup. Results of one card go through unchanged."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from scfa_bench.analysis.frame import prepare
from scfa_bench.results.reader import Results

UNKNOWN_CARD = "unknown card"


def card_slug(card: str) -> str:
    """A folder name for a card: `NVIDIA H100 80GB HBM3` -> `nvidia-h100-80gb-hbm3`."""
    return re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-") or "unknown-card"


def split_by_card(results: Results) -> list[tuple[str, Results]]:
    """(card, its rows) per card in the CSV's `device` column; one pair when only one card."""
    devices = [r.device.strip() for r in results.rows]
    cards = sorted(set(devices))
    if len(cards) <= 1:
        return [(results.device_name or UNKNOWN_CARD, results)]
    split = []
    for card in cards:
        mine = [i for i, device in enumerate(devices) if device == card]
        split.append(
            (
                card or UNKNOWN_CARD,
                replace(
                    results,
                    rows=tuple(results.rows[i] for i in mine),
                    lines=tuple(results.lines[i] for i in mine),
                    meta=dict(results.meta, device_name=card or UNKNOWN_CARD),
                ),
            )
        )
    return split


def make_plots(results: Results, out_dir: Path) -> list[Any]:
    """Every figure (`plots.PlotFile`s), under `out_dir/<card>/` when there are several cards."""
    from scfa_bench.analysis import plots  # matplotlib: only where a figure is drawn

    per_card = split_by_card(results)
    if len(per_card) == 1:
        return plots.make_plots(prepare(results), out_dir)
    return [
        plot_file
        for card, rows in per_card
        for plot_file in plots.make_plots(prepare(rows), out_dir / card_slug(card))
    ]


def write_report(results: Results, out_dir: Path) -> Path:
    """The report; with several cards one per card under `out_dir/<card>/` and an index."""
    from scfa_bench.analysis import report

    per_card = split_by_card(results)
    if len(per_card) == 1:
        return report.write_report(prepare(results), out_dir)
    lines = [
        f"# {results.suite_name}: {results.name}",
        "",
        f"Measured on {len(per_card)} cards. Timings of different cards are not comparable, "
        "so each card has its own report, plots and speedups (against the baseline measured "
        "on that card):",
        "",
    ]
    for card, rows in per_card:
        path = report.write_report(prepare(rows), out_dir / card_slug(card))
        lines.append(f"* [{card}]({path.relative_to(out_dir).as_posix()}): {len(rows.rows)} rows")
    index = out_dir / report.REPORT_NAME
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index

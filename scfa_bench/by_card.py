"""Plots and reports of results measured on several cards (parts merged with
`--allow-mixed-devices`): one set per card, so two cards' timings never share an axis or a
speedup. Results of one card go through unchanged."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from scfa_bench import plots, report
from scfa_bench.loading import Results

UNKNOWN_CARD = "unknown card"


def card_slug(card: str) -> str:
    """A folder name for a card: `NVIDIA H100 80GB HBM3` -> `nvidia-h100-80gb-hbm3`."""
    return re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-") or "unknown-card"


def split_by_card(results: Results) -> list[tuple[str, Results]]:
    """(card, its rows) per card in the CSV's `device` column; one pair when only one card."""
    devices = results.frame["device"].fillna("").astype(str).str.strip()
    cards = sorted(set(devices))
    if len(cards) <= 1:
        return [(results.device_name or UNKNOWN_CARD, results)]
    return [
        (
            card or UNKNOWN_CARD,
            replace(
                results,
                frame=results.frame[devices == card].reset_index(drop=True),
                meta=dict(results.meta, device_name=card or UNKNOWN_CARD),
            ),
        )
        for card in cards
    ]


def make_plots(results: Results, out_dir: Path) -> list[plots.PlotFile]:
    """Every figure, under `out_dir/<card>/` when the results hold several cards."""
    per_card = split_by_card(results)
    if len(per_card) == 1:
        return plots.make_plots(results, out_dir)
    files: list[plots.PlotFile] = []
    for card, rows in per_card:
        files.extend(plots.make_plots(rows, out_dir / card_slug(card)))
    return files


def write_report(results: Results, out_dir: Path) -> Path:
    """The report; with several cards one per card under `out_dir/<card>/` and an index."""
    per_card = split_by_card(results)
    if len(per_card) == 1:
        return report.write_report(results, out_dir)
    lines = [
        f"# {results.suite_name}: {results.name}",
        "",
        f"Measured on {len(per_card)} cards. Timings of different cards are not comparable, "
        "so each card has its own report, plots and speedups (against the baseline measured "
        "on that card):",
        "",
    ]
    for card, rows in per_card:
        path = report.write_report(rows, out_dir / card_slug(card))
        lines.append(f"* [{card}]({path.relative_to(out_dir).as_posix()}): {len(rows.frame)} rows")
    index = out_dir / report.REPORT_NAME
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index

"""Which method is fastest at each density: the rows' own measured `density` (the fraction of
causal pairs each method attends) cut into bands, the fastest ok row of each band per sequence
length. It answers the question a user of `suites/peers.yaml` asks: at the sparsity I can
afford, which method should I run?"""

from __future__ import annotations

import itertools
import math

import pandas as pd

# Band edges of density: below 5%, 5-15%, 15-35%, 35% and more (dense is 1.0).
BAND_EDGES = (0.0, 0.05, 0.15, 0.35, 1.0 + 1e-9)
BAND_MODE = "fwd+bwd"


def band_label(low: float, high: float) -> str:
    high_text = "1" if high > 1 else f"{high:g}"
    return f"[{low:g}, {high_text}" + ("]" if high > 1 else ")")


def _setting(row: pd.Series) -> str:
    n_buckets = pd.to_numeric(row.get("n_buckets"), errors="coerce")
    drop_rate = pd.to_numeric(row.get("drop_rate"), errors="coerce")
    if pd.notna(n_buckets):
        return f"{row['impl']} nb={int(n_buckets)}"
    if pd.notna(drop_rate):
        return f"{row['impl']} p={drop_rate:g}"
    return str(row["impl"])


def fastest_by_band(frame: pd.DataFrame, mode: str = BAND_MODE) -> pd.DataFrame:
    """One row per (seq_len, band) with an ok measurement: the fastest setting, its density,
    time and speedup; limits and the dense baseline's own row are left out of the race."""
    rows = frame[
        (frame["status"] == "ok")
        & (frame["mode"] == mode)
        & (frame["impl_kind"] != "limit")
        & frame["density"].notna()
        & frame["ms_median"].notna()
    ]
    out = []
    for seq_len in sorted(rows["seq_len"].unique()):
        at = rows[rows["seq_len"] == seq_len]
        for low, high in itertools.pairwise(BAND_EDGES):
            band = at[(at["density"] >= low) & (at["density"] < high)]
            if band.empty:
                continue
            best = band.loc[band["ms_median"].idxmin()]
            out.append(
                {
                    "seq_len": int(seq_len),
                    "band": band_label(low, high),
                    "fastest": _setting(best),
                    "density": float(best["density"]),
                    "ms_median": float(best["ms_median"]),
                    "speedup": float(best["speedup"]) if pd.notna(best["speedup"]) else math.nan,
                    "methods": int(band["impl"].nunique()),
                }
            )
    return pd.DataFrame(out)


def density_section(frame: pd.DataFrame) -> str:
    """Markdown: the fastest method per density band, when several methods measured their own
    density (a peers run); empty otherwise."""
    measured = frame[frame["density"].notna() & (frame["density"] < 1)]
    if measured["impl"].nunique() < 2:
        return ""
    table = fastest_by_band(frame)
    if table.empty:
        return ""
    lines = [
        f"## Fastest method by density ({BAND_MODE})",
        "",
        "Density is the fraction of causal (query, key) pairs each method attends, measured from "
        "its own choice (see the peers' docs). Within each band, the fastest ok row.",
        "",
        "| T | density band | fastest | its density | ms | speedup | methods in band |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        speedup = "" if math.isnan(r.speedup) else f"{r.speedup:.2f}x"
        lines.append(
            f"| {r.seq_len} | {r.band} | {r.fastest} | {r.density:.3f} | {r.ms_median:.3g} | "
            f"{speedup} | {r.methods} |"
        )
    return "\n".join(lines)

"""Report sections beyond speed: clocks and throttling, the limit, approximations, stages.

Each returns Markdown (empty when the run has nothing to say there) for `report.render_report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from scfa_bench.analysis.frame import REPORT_MODES
from scfa_bench.measure.stages import parse_stage_cell
from scfa_bench.results.reader import Results

_POINT_COLUMNS = ("impl", "mode", "seq_len", "n_buckets", "drop_rate")


# How a row's time was taken, by its `timer` column and whether it is a model step.
_CLOCK_TEXT = {
    (False, "cuda_event"): "triton's do_bench (CUDA events, L2 flushed between calls)",
    (
        False,
        "cuda_graph",
    ): "CUDA-graph replays, each timed with CUDA events (L2 flushed before each)",
    (False, "wall_clock"): "wall clock on the CPU (time.perf_counter around each call)",
    (True, "cuda_event"): "CUDA events around back-to-back training steps",
    (True, "cuda_graph"): "CUDA events around replays of a captured training step",
    (True, "wall_clock"): "wall clock on the CPU around each training step",
}


def clocks_text(frame: pd.DataFrame) -> str:
    """What timed the run's rows, from their `timer` column: 'CLOCK: N rows; ...'."""
    timed = frame[frame["timer"].fillna("") != ""]
    if timed.empty:
        return "no row was timed"
    is_model = timed["model"].fillna("") != ""
    counts = pd.DataFrame({"model": is_model, "timer": timed["timer"]}).value_counts(sort=False)
    parts = []
    for (model, timer), n in sorted(counts.items(), key=lambda item: (item[0][0], item[0][1])):
        text = _CLOCK_TEXT.get((bool(model), str(timer)), f"timer {timer}")
        parts.append(f"{text}: {n} row{'s' if n != 1 else ''}")
    return "; ".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    clean = lambda c: str(c).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]


def _num(value: Any, fmt: str = "g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, fmt)


def _point(row: pd.Series) -> list[str]:
    return [
        str(row["impl"]),
        str(row["mode"]),
        str(row["seq_len"]),
        _num(row["n_buckets"], ".0f"),
        _num(row["drop_rate"]),
    ]


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    order = {mode: n for n, mode in enumerate(REPORT_MODES)}
    return frame.assign(_m=frame["mode"].map(order)).sort_values(
        ["_m", "impl", "n_buckets", "drop_rate", "seq_len"]
    )


def telemetry_section(results: Results, frame: pd.DataFrame) -> str:
    """The run's SM clock and every row NVML saw slowed down (power, heat, or low clock)."""
    lines = ["## Clocks and throttling", ""]
    sampled = frame[frame["sm_mhz_median"].notna()]
    if sampled.empty:
        note = (results.meta.get("telemetry") or {}).get("note") or "no NVML samples"
        return "\n".join([*lines, f"No telemetry in this run ({note})."])
    ok = sampled[sampled["status"] == "ok"]
    clock = ok["sm_mhz_median"].median() if not ok.empty else sampled["sm_mhz_median"].median()
    lines.append(
        f"NVML sampled every row while it was timed: median SM clock {clock:.0f} MHz (lowest "
        f"{sampled['sm_mhz_min'].min():.0f}), highest temperature "
        f"{_num(sampled['temp_c_max'].max(), '.0f')} C, highest power "
        f"{_num(sampled['power_w_max'].max(), '.0f')} W."
    )
    throttled = sampled[sampled["throttled"] == "yes"]
    if throttled.empty:
        return "\n".join([*lines, "", "No row was throttled."])
    lines += [
        "",
        f"**{len(throttled)} throttled row(s)**: a power or thermal slowdown reason was seen, "
        "or the SM clock fell below 85% of its maximum; their times are not the card's best.",
        "",
    ]
    rows = [
        [
            *_point(r),
            "**throttled**",
            _num(r["sm_mhz_min"], ".0f"),
            _num(r["sm_mhz_median"], ".0f"),
            _num(r["temp_c_max"], ".0f"),
            _num(r["power_w_max"], ".0f"),
            str(r["throttle_reasons"] or ""),
        ]
        for _, r in _ordered(throttled).iterrows()
    ]
    header = ["impl", "mode", "T", "n_buckets", "drop_rate", "flag", "SM min", "SM median"]
    return "\n".join(lines + _table([*header, "temp C", "power W", "reasons"], rows))


def limits_section(frame: pd.DataFrame) -> str:
    """fraction_of_limit of every sparse row that has a limit row at its point."""
    rows = frame[(frame["status"] == "ok") & frame["fraction_of_limit"].notna()]
    if rows.empty:
        return ""
    lines = [
        "## Fraction of the limit",
        "",
        "Limit time / time: 1.0 is as fast as the best dense kernel doing the work the pattern "
        "allows (`limit_hash`: cuDNN on nb equal segments; `limit_qk`: cuDNN on the compacted "
        "rows). The limits compute a different attention and are checked against their own "
        "dense reference.",
        "",
    ]
    body = [
        [*_point(r), _num(r["ms_median"], ".4g"), f"{r['fraction_of_limit']:.2f}"]
        for _, r in _ordered(rows).iterrows()
    ]
    return "\n".join(
        lines + _table(["impl", "mode", "T", "n_buckets", "drop_rate", "ms", "of limit"], body)
    )


def approximation_section(frame: pd.DataFrame) -> str:
    """How far approximate implementations (Reformer) are from the exact sparse attention."""
    if frame.empty:  # e.g. a run killed before its first row
        return ""
    rows = frame[frame["approx_rel_err"].notna() & (frame["mode"] == frame["mode"].iloc[0])]
    if rows.empty:
        return ""
    rows = rows.drop_duplicates(["impl", "seq_len", "n_buckets", "drop_rate"])
    lines = [
        "## Approximate implementations",
        "",
        "Relative error of the output (max |x - exact| / max |exact| on the checked rows) "
        "against the exact sparse attention of the point; each passed the check against the "
        "dense reference of what it computes.",
        "",
    ]
    body = [
        [*_point(r)[:1], *_point(r)[2:], f"{r['approx_rel_err']:.3g}"] for _, r in rows.iterrows()
    ]
    return "\n".join(
        lines + _table(["impl", "T", "n_buckets", "drop_rate", "rel err vs exact"], body)
    )


def stages_section(frame: pd.DataFrame) -> str:
    """Per-call GPU time by stage of the rows profiled with `run --profile-stages`."""
    rows = frame[(frame["stage_ms"].fillna("") != "") & (frame["status"] == "ok")]
    if rows.empty:
        return ""
    lines = [
        "## Stages (run --profile-stages)",
        "",
        "GPU time per call by stage (ms), from torch.profiler; `idle` is the time inside the "
        "call with no kernel running.",
        "",
    ]
    body = []
    for _, r in _ordered(rows).iterrows():
        stages = parse_stage_cell(r["stage_ms"])
        text = ", ".join(f"{name} {ms:.3g}" for name, ms in stages.items())
        body.append([*_point(r), _num(r["ms_median"], ".4g"), text, _num(r["gpu_idle_ms"], ".3g")])
    header = ["impl", "mode", "T", "n_buckets", "drop_rate", "ms", "stages", "idle"]
    return "\n".join(lines + _table(header, body))

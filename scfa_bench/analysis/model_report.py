"""The report's section on model-suite rows: one table per model, dtype and `compile`, with
step time, throughput, memory, attention share and speedup of every row."""

from __future__ import annotations

import math

import pandas as pd

from scfa_bench.analysis import plot_plan

_HEADER = ("impl", "point", "T", "B", "ms median [q20, q80]", "GPU ms", "tokens/s", "peak MiB")
_HEADER += ("attention share", "speedup")


def model_steps_section(frame: pd.DataFrame, baseline: str | None) -> str:
    """Markdown for the model rows of `frame`; "" when it has none."""
    model_rows = frame[frame["model"] != ""]
    if model_rows.empty:
        return ""
    lines = [
        "## Model steps",
        "",
        "One training step per row (forward, loss, backward; `step+adamw` also the AdamW "
        "update). Attention share: GPU time of attention and bucketing kernels over all GPU "
        "time in the profiled steps (`scfa_bench.e2e.kernel_share`; empty on the CPU). "
        "GPU ms: the GPU time of all kernels per step in those profiled steps; where the step "
        "takes clearly longer, the host (Python, dispatch, launches) sets its pace. "
        f"Speedup over `{baseline or 'n/a'}` compiled the same way.",
    ]
    for group in plot_plan.shape_groups(model_rows):
        rows = plot_plan.group_rows(model_rows, group)
        for mode in sorted(rows["mode"].unique()):
            lines += ["", f"### {group.label()}, {mode}", "", _table(rows[rows["mode"] == mode])]
    return "\n".join(lines)


def _table(rows: pd.DataFrame) -> str:
    lines = [_row(_HEADER), _row(["---", "---"] + ["---:"] * (len(_HEADER) - 2))]
    ordered = rows.sort_values(["seq_len", "impl", "n_buckets", "drop_rate"], na_position="first")
    for _, row in ordered.iterrows():
        cells = [str(row["impl"]), _point(row), str(row["seq_len"]), str(row["batch"])]
        if row["status"] != "ok":
            cells += [f"*{row['status']}*"] + [""] * (len(_HEADER) - 5)
        else:
            cells += [
                f"{row['ms_median']:.4g} [{row['ms_q20']:.4g}, {row['ms_q80']:.4g}]",
                _number(row.get("gpu_ms"), "{:.4g}"),
                _number(row["tokens_per_s"], "{:,.0f}"),
                _number(row["peak_mem_mib"], "{:,.0f}"),
                _number(row["attention_share"], "{:.0%}"),
                _number(row["speedup"], "{:.2f}x"),
            ]
        lines.append(_row(cells))
    return "\n".join(lines)


def _point(row: pd.Series) -> str:
    if not _missing(row["n_buckets"]):
        return f"nb={int(row['n_buckets'])}"
    if not _missing(row["drop_rate"]):
        return f"p={row['drop_rate']:g}"
    return ""


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: object, fmt: str) -> str:
    return "" if _missing(value) else fmt.format(float(value))  # type: ignore[arg-type]


def _row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

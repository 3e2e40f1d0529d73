"""Which figures a run has data for: their kinds, shape groups, file names and titles.

Planning is separate from drawing (`plots`), so the report can list the figures without
drawing them, and `plots` draws exactly what is planned here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from scfa_bench.analysis.frame import REPORT_MODES, PreparedResults
from scfa_bench.constants import SWEEP_AXES

KINDS = (
    "runtime",
    "speedup",
    "heatmap_n_buckets",
    "heatmap_drop_rate",
    "fraction_of_ideal",
    "fraction_of_limit",
    "speed_vs_density",
)
_KIND_TITLES = {
    "runtime": "Runtime",
    "speedup": "Speedup over {baseline}",
    "heatmap_n_buckets": "Speedup over {baseline} by bucket count",
    "heatmap_drop_rate": "Speedup over {baseline} by drop rate",
    "fraction_of_ideal": "Fraction of ideal speedup (speedup x density)",
    "fraction_of_limit": "Fraction of the limit (limit time / time)",
    "speed_vs_density": "Speedup over {baseline} against the density each method attends",
}


@dataclass(frozen=True)
class ShapeGroup:
    """The fixed part of a suite's shape; one set of figures per group. Model-suite rows group
    by model, dtype and `compile`; their batch may follow seq_len, so it is not part of it."""

    batch: int | None
    heads: int
    head_dim: int
    dtype: str
    model: str = ""
    compile: bool | None = None

    def label(self) -> str:
        if self.model:
            return f"{self.model} {self.dtype}, {'compiled' if self.compile else 'eager'}"
        return f"{self.dtype}, B={self.batch} H={self.heads} D={self.head_dim}"

    def slug(self) -> str:
        if self.model:
            return f"{self.model}-{self.dtype}-{'compiled' if self.compile else 'eager'}"
        return f"B{self.batch}-H{self.heads}-D{self.head_dim}-{self.dtype}"


@dataclass(frozen=True)
class FigureSpec:
    kind: str
    mode: str
    group: ShapeGroup
    stem: str  # file name without extension
    title: str

    @property
    def png_name(self) -> str:
        return f"{self.stem}.png"

    @property
    def svg_name(self) -> str:
        return f"{self.stem}.svg"


def mode_slug(mode: str) -> str:
    """'fwd+bwd' -> 'fwd-bwd' (a '+' in a file name is awkward in URLs)."""
    return mode.replace("+", "-")


def impl_axis(frame: pd.DataFrame, impl: str) -> str | None:
    """The sweep axis an implementation uses (from its rows), or None for dense ones."""
    rows = frame[frame["impl"] == impl]
    for axis in SWEEP_AXES:
        if rows[axis].notna().any():
            return axis
    return None


def axis_label(axis: str, value: float) -> str:
    return f"nb={int(value)}" if axis == "n_buckets" else f"p={value:g}"


def seq_len_label(seq_len: int) -> str:
    return f"{seq_len // 1024}k" if seq_len >= 1024 and seq_len % 1024 == 0 else str(seq_len)


def plan_figures(data: PreparedResults) -> list[FigureSpec]:
    """Every figure that has data to show, in report order (fwd+bwd first)."""
    frame = data.frame
    groups = shape_groups(frame)
    card = data.device_name or "unknown card"
    baseline = data.baseline or "baseline"
    specs: list[FigureSpec] = []
    for group in groups:
        suffix = f"_{group.slug()}" if len(groups) > 1 else ""
        in_group = group_rows(frame, group)
        for mode in REPORT_MODES:
            rows = in_group[in_group["mode"] == mode]
            for kind in KINDS:
                if not _has_data(kind, rows, data.baseline):
                    continue
                title = (
                    f"{_KIND_TITLES[kind].format(baseline=baseline)}, {mode}\n"
                    f"{card}, {group.label()}"
                )
                stem = f"{kind}_{mode_slug(mode)}{suffix}"
                specs.append(FigureSpec(kind, mode, group, stem, title))
    return specs


def shape_groups(frame: pd.DataFrame) -> list[ShapeGroup]:
    """The groups of a run's rows, attention rows by shape, model rows by model."""
    groups = set()
    for row in frame.itertuples(index=False):
        if row.model:
            compiled = bool(row.compile) if row.compile is not None else None
            group = ShapeGroup(None, int(row.heads), int(row.head_dim), str(row.dtype))
            groups.add(replace(group, model=str(row.model), compile=compiled))
        else:
            batch, heads, head_dim = int(row.batch), int(row.heads), int(row.head_dim)
            groups.add(ShapeGroup(batch, heads, head_dim, str(row.dtype)))
    return sorted(
        groups,
        key=lambda g: (g.model, g.dtype, g.batch or 0, g.heads, g.head_dim, bool(g.compile)),
    )


def group_rows(frame: pd.DataFrame, group: ShapeGroup) -> pd.DataFrame:
    same = (
        (frame["heads"] == group.heads)
        & (frame["head_dim"] == group.head_dim)
        & (frame["dtype"] == group.dtype)
        & (frame["model"] == group.model)
    )
    if group.model:
        return frame[same & (frame["compile"] == group.compile)]
    return frame[same & (frame["batch"] == group.batch)]


def figure_rows(kind: str, rows: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """The rows (any status) a figure of this kind would draw from."""
    sparse = rows["n_buckets"].notna() | rows["drop_rate"].notna()
    if kind == "runtime":
        return rows
    if kind == "speedup":
        return rows[rows["impl"] != baseline]
    if kind == "fraction_of_ideal":
        return rows[sparse]
    if kind == "fraction_of_limit":
        return rows[sparse & (rows["impl_kind"] != "limit")]
    if kind == "speed_vs_density":
        return rows[(rows["impl"] != baseline) & (rows["impl_kind"] != "limit")]
    axis = kind.removeprefix("heatmap_")
    return rows[rows[axis].notna()]


def drawable_rows(kind: str, rows: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """The ok rows with the values this kind plots."""
    picked = figure_rows(kind, rows, baseline)
    picked = picked[picked["status"] == "ok"]
    if kind == "runtime":
        return picked
    if kind == "fraction_of_limit":
        return picked[picked["fraction_of_limit"].notna() & (picked["fraction_of_limit"] > 0)]
    picked = picked[picked["speedup"].notna() & (picked["speedup"] > 0)]
    if kind in ("fraction_of_ideal", "speed_vs_density"):
        picked = picked[picked["density"].notna() & (picked["density"] > 0)]
    if kind == "speed_vs_density" and picked[picked["density"] < 1]["impl"].nunique() < 2:
        return picked.iloc[0:0]  # one sparse method alone: the speedup figure says it all
    return picked


def _has_data(kind: str, rows: pd.DataFrame, baseline: str | None) -> bool:
    return not drawable_rows(kind, rows, baseline).empty

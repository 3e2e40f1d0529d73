"""Stage tables of profiled calls as Markdown and CSV, and their Chrome / Perfetto trace."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from scfa_bench.measure.stages import StageProfile


def _ms(us: float) -> str:
    return f"{us / 1000:.3f}"


def markdown(profile: StageProfile, *, title: str = "", measured_ms: float | None = None) -> str:
    """The stage table, the idle line and the per-kernel table as Markdown."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| stage | ms per call | share |", "|---|---:|---:|"]
    lines += [f"| {s.stage} | {_ms(s.total_us)} | {s.share:.1%} |" for s in profile.stages]
    kernel_ms = sum(s.total_us for s in profile.stages) / 1000
    lines.append(f"| **kernels, all stages** | **{kernel_ms:.3f}** | 100% |")
    idle = profile.idle
    lines += [
        "",
        f"GPU span of a call {_ms(idle.span_us)} ms: kernels {_ms(idle.busy_us)} ms, "
        f"idle between kernels {_ms(idle.idle_us)} ms (largest gap {_ms(idle.largest_gap_us)} "
        f"ms), over {idle.calls} profiled call(s).",
    ]
    if measured_ms is not None and measured_ms > 0:
        lines.append(
            f"Measured call time {measured_ms:.3f} ms: kernels cover "
            f"{kernel_ms / measured_ms:.1%}, the GPU span {idle.span_us / 1000 / measured_ms:.1%}."
        )
    lines += [
        "",
        "| kernel | stage | calls | total ms | mean ms | share |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| `{r.name[:80]}` | {r.stage} | {r.calls:g} | {_ms(r.total_us)} | {_ms(r.mean_us)} | "
        f"{r.share:.1%} |"
        for r in profile.kernels
    ]
    return "\n".join(lines) + "\n"


def write_csv(profile: StageProfile, path: Path) -> None:
    """One row per kernel (stage, launches, per-call and per-launch microseconds, share)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kernel", "stage", "calls", "total_us", "mean_us", "share"])
        for r in profile.kernels:
            writer.writerow(
                [
                    r.name,
                    r.stage,
                    f"{r.calls:g}",
                    f"{r.total_us:.3f}",
                    f"{r.mean_us:.3f}",
                    f"{r.share:.4f}",
                ]
            )


def export_trace(prof: Any, path: Path) -> Path:
    """The Chrome / Perfetto trace of the profiled region (open in ui.perfetto.dev)."""
    prof.export_chrome_trace(str(path))
    return path

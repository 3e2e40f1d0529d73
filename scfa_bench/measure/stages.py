"""Where the time of one call goes: GPU kernels from `torch.profiler`, grouped into stages
(the Markdown / CSV rendering is `analysis.profile_report`).

Input: the GPU-side events of a profiled region (`scfa_bench.measure.profile_call` records
and reads them from `torch.profiler`; tests build them by hand). Two kinds of GPU events:

* kernels (and memcpy / memset activities): they take GPU time;
* annotations: the GPU-side span of a `torch.profiler.record_function(NAME)` range (from the
  first to the last kernel launched inside it). The profiling runner wraps every call in
  `CALL_RANGE`, its forward in `FORWARD_RANGE` and its backward in `BACKWARD_RANGE`;
  implementations mark their own steps (`mask_build`, `permute`, `lsh`).

A kernel's stage is, in this order: the stage its name matches (our Triton kernels, see
`KERNEL_STAGES`); else the stage of the innermost step annotation around it
(`RANGE_STAGES`); else "forward (other)" or "backward (other)" by the direction annotation
around it; else "unattributed". Times are per call (totals divided by the number of calls).
The GPU idle time of a call is its span (first kernel start to last kernel end inside the
call annotation) minus the time some kernel runs: launch gaps and host synchronisations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from scfa_bench.measure.profile_call import (
    BACKWARD_RANGE,
    CALL_RANGE,
    FORWARD_RANGE,
    RANGE_STAGES,
    GpuEvent,
)

# Our kernels (kernels/_triton_*.py) by name; checked in order, first match wins.
KERNEL_STAGES: tuple[tuple[str, str], ...] = (
    # The counting sort: one launch before the chunk-parallel plan, histogram + scatter after.
    (r"bucket_(sort_pair|histogram|scatter)_kernel", "plan: sort"),
    (r"(query|key)_tile_ranges_kernel", "plan: tile ranges"),
    (r"sparse_attention_fwd_kernel", "forward kernel"),
    (r"attention_bwd_delta_kernel", "backward: delta"),
    (r"sparse_attention_bwd_dkdv_kernel", "backward: dK/dV"),
    (r"sparse_attention_bwd_dq_kernel", "backward: dQ"),
)
FORWARD_OTHER = "forward (other)"
BACKWARD_OTHER = "backward (other)"
UNATTRIBUTED = "unattributed"
STAGE_ORDER = (
    "bucketing (lsh)",
    "mask build",
    "plan: sort",
    "plan: tile ranges",
    "permute",
    "forward kernel",
    FORWARD_OTHER,
    "backward: delta",
    "backward: dK/dV",
    "backward: dQ",
    BACKWARD_OTHER,
    UNATTRIBUTED,
)


@dataclass(frozen=True)
class StagedKernel:
    name: str
    stage: str
    start_us: float
    end_us: float
    call: int | None  # index of the call annotation around it, None outside every call

    @property
    def duration_us(self) -> float:
        return self.end_us - self.start_us


@dataclass(frozen=True)
class KernelRow:
    name: str
    stage: str
    calls: float  # launches per call
    total_us: float  # per call
    mean_us: float  # per launch
    share: float  # of the call's kernel time


@dataclass(frozen=True)
class StageRow:
    stage: str
    total_us: float  # per call
    share: float


@dataclass(frozen=True)
class IdleSummary:
    calls: int
    span_us: float  # mean over calls: first kernel start to last kernel end
    busy_us: float  # mean time some kernel runs
    idle_us: float  # span - busy
    largest_gap_us: float  # the longest gap between kernels in any call


@dataclass(frozen=True)
class StageProfile:
    kernels: list[KernelRow]
    stages: list[StageRow]
    idle: IdleSummary


def _innermost(kernel: GpuEvent, ranges: list[GpuEvent]) -> GpuEvent | None:
    around = [r for r in ranges if r.contains(kernel)]
    return min(around, key=lambda r: r.duration_us) if around else None


def stage_of(kernel: GpuEvent, annotations: list[GpuEvent]) -> str:
    for pattern, stage in KERNEL_STAGES:
        if re.search(pattern, kernel.name):
            return stage
    step = _innermost(kernel, [a for a in annotations if a.name in RANGE_STAGES])
    if step is not None:
        return RANGE_STAGES[step.name]
    direction = _innermost(
        kernel, [a for a in annotations if a.name in (FORWARD_RANGE, BACKWARD_RANGE)]
    )
    if direction is None:
        return UNATTRIBUTED
    return FORWARD_OTHER if direction.name == FORWARD_RANGE else BACKWARD_OTHER


def attribute(events: Iterable[GpuEvent]) -> tuple[list[StagedKernel], list[GpuEvent]]:
    """Every kernel with its stage and call index; and the call annotations, in time order."""
    events = list(events)
    annotations = [e for e in events if e.annotation]
    calls = sorted((a for a in annotations if a.name == CALL_RANGE), key=lambda a: a.start_us)
    staged = []
    for kernel in sorted((e for e in events if not e.annotation), key=lambda e: e.start_us):
        call = next((i for i, c in enumerate(calls) if c.contains(kernel)), None)
        staged.append(
            StagedKernel(
                kernel.name, stage_of(kernel, annotations), kernel.start_us, kernel.end_us, call
            )
        )
    return staged, calls


def _busy_us(kernels: list[StagedKernel]) -> tuple[float, float]:
    """(time covered by the union of kernel intervals, largest gap between them)."""
    busy = gap = 0.0
    current_start = current_end = None
    for k in sorted(kernels, key=lambda k: k.start_us):
        if current_end is None or k.start_us > current_end:
            if current_end is not None:
                busy += current_end - current_start
                gap = max(gap, k.start_us - current_end)
            current_start, current_end = k.start_us, k.end_us
        else:
            current_end = max(current_end, k.end_us)
    if current_end is not None:
        busy += current_end - current_start
    return busy, gap


def idle_summary(kernels: list[StagedKernel], n_calls: int) -> IdleSummary:
    """Span, busy and idle GPU time per call (kernels grouped by their call index; all
    kernels as one call when there are no call annotations)."""
    groups: dict[int, list[StagedKernel]] = {}
    for k in kernels:
        key = k.call if n_calls else 0
        if key is not None:
            groups.setdefault(key, []).append(k)
    if not groups:
        return IdleSummary(calls=0, span_us=0.0, busy_us=0.0, idle_us=0.0, largest_gap_us=0.0)
    spans, busies, gaps = [], [], []
    for group in groups.values():
        span = max(k.end_us for k in group) - min(k.start_us for k in group)
        busy, gap = _busy_us(group)
        spans.append(span)
        busies.append(busy)
        gaps.append(gap)
    n = len(groups)
    return IdleSummary(
        calls=n,
        span_us=sum(spans) / n,
        busy_us=sum(busies) / n,
        idle_us=(sum(spans) - sum(busies)) / n,
        largest_gap_us=max(gaps),
    )


def _stage_rank(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage), "") if stage in STAGE_ORDER else (len(STAGE_ORDER), stage)


def profile_stages(events: Iterable[GpuEvent]) -> StageProfile:
    """Per-kernel and per-stage tables (per call) and the idle time of the profiled calls.

    With call annotations only kernels inside a call count; without, everything is one call.
    """
    staged, calls = attribute(events)
    n_calls = len(calls)
    if n_calls:
        staged = [k for k in staged if k.call is not None]
    per_call = max(n_calls, 1)
    total = sum(k.duration_us for k in staged)
    share = lambda us: us * per_call / total if total > 0 else 0.0

    by_kernel: dict[tuple[str, str], list[StagedKernel]] = {}
    for k in staged:
        by_kernel.setdefault((k.name, k.stage), []).append(k)
    kernel_rows = [
        KernelRow(
            name=name,
            stage=stage,
            calls=len(group) / per_call,
            total_us=sum(k.duration_us for k in group) / per_call,
            mean_us=sum(k.duration_us for k in group) / len(group),
            share=share(sum(k.duration_us for k in group) / per_call),
        )
        for (name, stage), group in by_kernel.items()
    ]
    kernel_rows.sort(key=lambda r: (_stage_rank(r.stage), -r.total_us))

    stage_us: dict[str, float] = {}
    for row in kernel_rows:
        stage_us[row.stage] = stage_us.get(row.stage, 0.0) + row.total_us
    stage_rows = [
        StageRow(stage, us, share(us))
        for stage, us in sorted(stage_us.items(), key=lambda s: _stage_rank(s[0]))
    ]
    return StageProfile(kernel_rows, stage_rows, idle_summary(staged, n_calls))


def stage_cell(profile: StageProfile) -> str:
    """Per-call stage times for the `stage_ms` column: "stage=ms;stage=ms" in stage order."""
    return ";".join(f"{s.stage}={s.total_us / 1000:.6g}" for s in profile.stages)


def parse_stage_cell(text: str) -> dict[str, float]:
    """The `stage_ms` column back as {stage: ms} (empty for an empty cell)."""
    stages = {}
    for part in filter(None, text.split(";")):
        name, _, value = part.rpartition("=")
        stages[name] = float(value)
    return stages

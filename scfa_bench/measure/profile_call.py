"""Profile a few calls of one implementation under `torch.profiler` (CUDA only), and read
the GPU events back (`gpu_events`): kernels and the GPU spans of our ranges.

Each profiled call runs inside `record_function(CALL_RANGE)`, its forward inside
`FORWARD_RANGE` and its backward inside `BACKWARD_RANGE`, so `profile_stages` can split the
GPU events by call and direction. Calls are synchronised one by one, inside the call range:
a call's GPU span then holds its own launch gaps and host synchronisations, not the previous
call's tail, and its CPU interval contains all its kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scfa_bench.constants import MODES
from scfa_bench.impls.base import AttentionInputs
from scfa_bench.measure.inputs import output_grad

CALL_RANGE = "scfa_bench.call"
FORWARD_RANGE = "scfa_bench.forward"
BACKWARD_RANGE = "scfa_bench.backward"
# Steps implementations mark with record_function, by range name.
RANGE_STAGES: dict[str, str] = {
    "lsh": "bucketing (lsh)",
    "mask_build": "mask build",
    "permute": "permute",
}
_KNOWN_RANGES = {CALL_RANGE, FORWARD_RANGE, BACKWARD_RANGE, *RANGE_STAGES}


@dataclass(frozen=True)
class GpuEvent:
    name: str
    start_us: float
    end_us: float
    annotation: bool = False  # a record_function range's GPU span, not a kernel

    @property
    def duration_us(self) -> float:
        return self.end_us - self.start_us

    def contains(self, other: GpuEvent) -> bool:
        return self.start_us <= other.start_us and other.end_us <= self.end_us


def _is_annotation(evt: Any) -> bool:
    return bool(getattr(evt, "is_user_annotation", False)) or evt.name in _KNOWN_RANGES


def _ancestor_names(evt: Any) -> list[str]:
    names = []
    while evt is not None:
        names.append(evt.name)
        evt = getattr(evt, "cpu_parent", None)
    return names


def _annotations_from_cpu(events: list[Any], kernels: list[Any]) -> list[GpuEvent]:
    """GPU spans of our ranges rebuilt from the CPU side, where the profiler gives none.

    A kernel belongs to the call whose CPU range contains it in time (the profiling runner
    synchronises inside each call range); its step and direction come from the CPU op that
    launched it (`linked_correlation_id`) and that op's parents. Backward work runs on the
    autograd engine's thread, recognised by its `autograd::engine::evaluate_function` parent.
    """
    from torch.autograd import DeviceType

    cpu = [e for e in events if e.device_type == DeviceType.CPU]
    by_id = {e.id: e for e in cpu if not getattr(e, "is_async", False)}
    calls = sorted((e for e in cpu if e.name == CALL_RANGE), key=lambda e: e.time_range.start)
    spans: dict[tuple[int, str], list[float]] = {}
    for k in kernels:
        start, end = k.time_range.start, k.time_range.end
        call = next(
            (
                i
                for i, c in enumerate(calls)
                if c.time_range.start <= start and end <= c.time_range.end
            ),
            None,
        )
        if call is None:
            continue
        names = _ancestor_names(by_id.get(getattr(k, "linked_correlation_id", -1)))
        tags = {n for n in names if n in RANGE_STAGES or n in (FORWARD_RANGE, BACKWARD_RANGE)}
        if any(n.startswith("autograd::engine::evaluate_function") for n in names):
            tags.discard(FORWARD_RANGE)
            tags.add(BACKWARD_RANGE)
        for tag in tags:
            span = spans.setdefault((call, tag), [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    result = [GpuEvent(CALL_RANGE, c.time_range.start, c.time_range.end, True) for c in calls]
    result += [GpuEvent(tag, lo, hi, True) for (_, tag), (lo, hi) in spans.items()]
    return result


def gpu_events(prof: Any) -> list[GpuEvent]:
    """The GPU events of a finished `torch.profiler.profile`: kernels and range annotations
    (the profiler's GPU-side annotations, else rebuilt from the CPU ranges)."""
    from torch.autograd import DeviceType

    events = list(prof.events())
    device = [e for e in events if e.device_type == DeviceType.CUDA]
    kernels = [e for e in device if not _is_annotation(e)]
    result = [GpuEvent(e.name, e.time_range.start, e.time_range.end) for e in kernels]
    annotations = [
        GpuEvent(e.name, e.time_range.start, e.time_range.end, annotation=True)
        for e in device
        if _is_annotation(e)
    ]
    if not any(a.name == CALL_RANGE for a in annotations):
        annotations = _annotations_from_cpu(events, kernels)
    return result + annotations


@dataclass
class ProfiledCall:
    profiler: Any  # the finished torch.profiler.profile (export_chrome_trace, events)
    events: list[GpuEvent]  # its GPU kernels and range annotations
    calls: int


def _step(forward: Callable[[], Tensor], mode: str, seed: int) -> Callable[[], None]:
    """One call of `mode`, its forward and backward inside their ranges."""
    record = torch.profiler.record_function
    if mode == "fwd":

        def forward_only() -> None:
            with torch.no_grad(), record(FORWARD_RANGE):
                forward()

        return forward_only
    out = forward()
    do = output_grad(out, seed=seed)
    if mode == "bwd":
        # The forward ran once above; only the backward is repeated (as the timing does).
        return _repeat_backward(out, do)

    def forward_backward() -> None:
        with record(FORWARD_RANGE):
            result = forward()
        _backward(result, do, retain_graph=False)

    return forward_backward


def _repeat_backward(out: Tensor, do: Tensor) -> Callable[[], None]:
    return lambda: _backward(out, do, retain_graph=True)


def _backward(out: Tensor, do: Tensor, *, retain_graph: bool) -> None:
    with torch.profiler.record_function(BACKWARD_RANGE):
        out.backward(do, retain_graph=retain_graph)


def profile_call(
    forward: Callable[[], Tensor],
    inputs: AttentionInputs,
    mode: str,
    *,
    calls: int = 5,
    warmup: int = 3,
    seed: int = 0,
) -> ProfiledCall:
    """Run `warmup` unprofiled then `calls` profiled calls of `mode`; the stage tables."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if not torch.cuda.is_available():
        raise RuntimeError("profiling needs a CUDA device (GPU kernel times)")
    from torch.profiler import ProfilerActivity, profile

    step = _step(forward, mode, seed)

    def clear_grads() -> None:
        for x in inputs.leaves:
            x.grad = None

    for _ in range(warmup):
        step()
        clear_grads()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            with torch.profiler.record_function(CALL_RANGE):
                step()
                # Inside the range: the call's CPU interval then holds all its GPU work.
                torch.cuda.synchronize()
            clear_grads()
    return ProfiledCall(profiler=prof, events=gpu_events(prof), calls=calls)

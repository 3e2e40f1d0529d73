"""Time one call: `triton.testing.do_bench` (CUDA events) on a GPU, wall clock on the CPU, or
replays of a CUDA graph of the call (`timing: {cuda_graph: true}`).

do_bench times what a caller sees: when the host issues a call's kernels more slowly than the
GPU runs them (many short kernels), the host's launch cost is in the time, and it varies with
the machine's CPU. A CUDA graph issues all kernels of one call at once, so its replays time the
GPU's work alone: the clock the regression gate wants, since the gate must compare a baseline
recorded on one machine with a run on another (the gate's fresh-machine replay once failed
on rows whose do_bench time was set by the host).

All report the median and the 20th/80th percentiles in milliseconds, with the same linear
interpolation between sorted samples that do_bench uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

QUANTILES = (0.5, 0.2, 0.8)
# The interpreter makes CPU calls slow: a few reps are enough and keep the smoke suite short.
CPU_MIN_REPS = 3
CPU_MAX_REPS = 100
CUDA_MIN_REPS = 10
# Bytes written between timed calls to evict the L2 cache (do_bench writes the same amount).
L2_FLUSH_BYTES = 256 * 1024 * 1024
CUDA_GRAPH_WARMUP_CALLS = 2  # eager calls before capture: autotuning and lazy set-up happen here
CUDA_GRAPH_ESTIMATE_REPLAYS = 5


class GraphCaptureError(RuntimeError):
    """The call could not be captured in a CUDA graph (a host sync, a CPU-GPU copy, a library
    call that does not support capture)."""


@dataclass(frozen=True)
class TimingSummary:
    """The quantiles of one timed call's samples, in milliseconds, and the clock used."""

    ms_median: float
    ms_q20: float
    ms_q80: float
    timer: str  # cuda_event | cuda_graph | wall_clock


def quantile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of the samples (do_bench's rule)."""
    if not samples:
        raise ValueError("quantile of no samples")
    ordered = sorted(samples)
    point = q * (len(ordered) - 1)
    lower, upper = math.floor(point), math.ceil(point)
    frac = point - lower
    return (1 - frac) * ordered[lower] + frac * ordered[upper]


def _clear_grads(grad_to_none: Sequence[Tensor] | None) -> None:
    for x in grad_to_none or ():
        x.grad = None


def time_wall_clock(
    fn: Callable[[], object],
    *,
    warmup_ms: float,
    rep_ms: float,
    grad_to_none: Sequence[Tensor] | None = None,
) -> TimingSummary:
    """Wall-clock timing for CPU runs: one estimate call, warm-up, then between 3 and 100 reps."""
    _clear_grads(grad_to_none)
    start = time.perf_counter()
    fn()
    estimate_ms = max((time.perf_counter() - start) * 1e3, 1e-6)
    for _ in range(int(warmup_ms / estimate_ms)):
        _clear_grads(grad_to_none)
        fn()
    n_reps = min(max(int(rep_ms / estimate_ms), CPU_MIN_REPS), CPU_MAX_REPS)
    samples = []
    for _ in range(n_reps):
        _clear_grads(grad_to_none)
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return TimingSummary(*(quantile(samples, q) for q in QUANTILES), timer="wall_clock")


def time_cuda(
    fn: Callable[[], object],
    *,
    warmup_ms: float,
    rep_ms: float,
    grad_to_none: Sequence[Tensor] | None = None,
) -> TimingSummary:
    """do_bench with CUDA events and an L2 flush between reps; `rep_ms` is raised when needed so
    that at least CUDA_MIN_REPS calls are timed (do_bench alone times one call of a slow fn)."""
    import torch
    from triton.testing import do_bench

    _clear_grads(grad_to_none)
    fn()  # compile / autotune outside the estimate
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    _clear_grads(grad_to_none)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    estimate_ms = start.elapsed_time(end)
    median, q20, q80 = do_bench(
        fn,
        warmup=warmup_ms,
        rep=max(rep_ms, CUDA_MIN_REPS * estimate_ms),
        grad_to_none=list(grad_to_none) if grad_to_none else None,
        quantiles=list(QUANTILES),
    )
    return TimingSummary(float(median), float(q20), float(q80), timer="cuda_event")


def time_cuda_graph(
    fn: Callable[[], object],
    *,
    warmup_ms: float,
    rep_ms: float,
    grad_to_none: Sequence[Tensor] | None = None,
) -> TimingSummary:
    """Replays of one CUDA graph of one call of `fn`, each timed with CUDA events, L2 flushed
    before each (outside the events). Call it on a side stream that also ran any forward whose
    backward `fn` runs: autograd issues a backward op on its forward op's stream, and the
    graph is captured on the current stream.

    Gradients: `grad_to_none` is cleared before capture, so the captured backward writes fresh
    gradients (no accumulation) and every replay does the same work as a do_bench rep.
    A call that cannot be captured raises GraphCaptureError with the reason."""
    import torch

    stream = torch.cuda.current_stream()
    if stream == torch.cuda.default_stream():
        raise RuntimeError("time_cuda_graph must run on a side stream, not the default stream")
    for _ in range(CUDA_GRAPH_WARMUP_CALLS):
        _clear_grads(grad_to_none)
        fn()
    torch.cuda.synchronize()
    _clear_grads(grad_to_none)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=stream):
            fn()
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        _clear_grads(grad_to_none)
        graph.reset()
        torch.cuda.synchronize()
        raise GraphCaptureError(
            f"CUDA graph capture failed: {exc} (an implementation whose calls cannot be "
            "captured is registered with cuda_graph=False; or set the suite's "
            "timing.cuda_graph: false)"
        ) from exc
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=stream.device)

    def replays(n: int, timed: bool) -> list[float]:
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(n if timed else 0)
        ]
        for i in range(n):
            flush.zero_()
            if timed:
                events[i][0].record()
            graph.replay()
            if timed:
                events[i][1].record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]

    try:
        estimate_ms = max(quantile(replays(CUDA_GRAPH_ESTIMATE_REPLAYS, True), 0.5), 1e-3)
        replays(int(warmup_ms / estimate_ms), False)
        samples = replays(max(int(rep_ms / estimate_ms), CUDA_MIN_REPS), True)
    finally:
        _clear_grads(grad_to_none)  # they live in the graph's memory, freed by reset()
        graph.reset()
    return TimingSummary(*(quantile(samples, q) for q in QUANTILES), timer="cuda_graph")


def time_call(
    fn: Callable[[], object],
    *,
    device: str,
    warmup_ms: float,
    rep_ms: float,
    grad_to_none: Sequence[Tensor] | None = None,
    cuda_graph: bool = False,
) -> TimingSummary:
    """Time `fn` on `device` ("cuda" or "cpu"); `cuda_graph` replays a CUDA graph of it on a
    GPU (see time_cuda_graph) and is ignored on the CPU, which has no graphs. A failed capture
    raises (the row becomes an error) rather than falling back: it can leave the process's
    CUDA generator marked as capturing, so later rows would fail in confusing ways anyway."""
    if device != "cuda":
        return time_wall_clock(fn, warmup_ms=warmup_ms, rep_ms=rep_ms, grad_to_none=grad_to_none)
    if cuda_graph:
        return time_cuda_graph(fn, warmup_ms=warmup_ms, rep_ms=rep_ms, grad_to_none=grad_to_none)
    return time_cuda(fn, warmup_ms=warmup_ms, rep_ms=rep_ms, grad_to_none=grad_to_none)

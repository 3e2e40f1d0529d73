"""Time one call: `triton.testing.do_bench` (CUDA events) on a GPU, wall clock on the CPU.

Both report the median and the 20th/80th percentiles in milliseconds, with the same linear
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


@dataclass(frozen=True)
class TimingSummary:
    """The quantiles of one timed call's samples, in milliseconds, and the clock used."""

    ms_median: float
    ms_q20: float
    ms_q80: float
    timer: str  # cuda_event | wall_clock


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


def time_call(
    fn: Callable[[], object],
    *,
    device: str,
    warmup_ms: float,
    rep_ms: float,
    grad_to_none: Sequence[Tensor] | None = None,
) -> TimingSummary:
    """Time `fn` on `device` ("cuda" or "cpu")."""
    timer = time_cuda if device == "cuda" else time_wall_clock
    return timer(fn, warmup_ms=warmup_ms, rep_ms=rep_ms, grad_to_none=grad_to_none)

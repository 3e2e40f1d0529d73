"""Measure one task (an implementation at one point): inputs, check, then every mode.

`measure_task` yields one `ModeMeasurement` per mode as soon as it is final, so the caller can
write it before the next mode starts. Failure handling: a device, dtype or head dim the registry
says the implementation does not support, or a backend the machine lacks -> `unavailable`
before any input is built; out of memory on any device -> `oom` (cache freed, the sweep goes
on); any other exception -> `error` with its message; a failed check -> `incorrect` (not
timed). Ctrl-C is not caught here.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scfa_bench.impls.base import (
    AttentionInputs,
    Implementation,
    ImplUnavailable,
    is_out_of_memory,
)
from scfa_bench.impls.registry import ImplSpec, get_spec
from scfa_bench.measure.inputs import output_grad
from scfa_bench.measure.memory import nvml_used_mib, peak_allocated_mib
from scfa_bench.measure.metrics import dense_causal_flops, tflops
from scfa_bench.measure.prepared_call import Failure, PreparedCall, build_and_check
from scfa_bench.measure.profile_call import profile_call
from scfa_bench.measure.stages import StageProfile, profile_stages
from scfa_bench.measure.telemetry import TelemetrySampler, TelemetrySummary
from scfa_bench.measure.timing import TimingSummary, time_call
from scfa_bench.suite.grid import Task
from scfa_bench.suite.schema import Suite

_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class ModeMeasurement:
    """What was measured for one mode of one task; None where nothing applies or was measured."""

    mode: str
    status: str
    error: str = ""
    density: float | None = None
    check_rel_err: float | None = None
    timing: TimingSummary | None = None
    tflops_dense_equiv: float | None = None
    tflops_effective: float | None = None
    peak_mem_mib: float | None = None
    nvml_mem_mib: float | None = None
    # Model suites (measure.model_point): throughput and the attention share of the step.
    tokens_per_s: float | None = None
    attention_ms: float | None = None
    attention_share: float | None = None
    gpu_ms: float | None = None  # GPU time of all kernels per step
    impl_kind: str = ""
    approx_rel_err: float | None = None
    telemetry: TelemetrySummary | None = None
    stages: StageProfile | None = None  # with_stages on a GPU
    profiler: Any = None  # ... and the torch.profiler result (for its trace)


def short_error(exc: BaseException) -> str:
    """One line naming the exception, cut to a length that fits a CSV cell."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def free_memory() -> None:
    """After an OOM: drop dead tensors and give the cache back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_task(
    suite: Suite, task: Task, device: str, *, with_stages: bool = False
) -> Iterator[ModeMeasurement]:
    """Check `task` once, then time and measure each of its modes on `device`; with
    `with_stages` (CUDA), also profile each mode and split its GPU time into stages."""
    spec = get_spec(task.impl)
    reason = spec.unsupported(device, suite.shape.dtype, suite.shape.head_dim, suite.shape.heads)
    if reason:
        yield from _every_mode(task.modes, spec.kind, ("unavailable", reason, {}))
        return
    impl = spec.create()
    ok, reason = impl.available(device)
    if not ok:
        yield from _every_mode(task.modes, spec.kind, ("unavailable", reason, {}))
        return
    prepared = _prepare_call(suite, task, spec, impl, device)
    if not isinstance(prepared, PreparedCall):
        yield from _every_mode(task.modes, spec.kind, prepared)
        return
    for mode in task.modes:
        yield _measure_prepared_mode(suite, task, spec, device, mode, prepared, with_stages)


def _every_mode(modes: Sequence[str], kind: str, failure: Failure) -> Iterator[ModeMeasurement]:
    """The same failure for each mode of a task."""
    status, error, extra = failure
    for mode in modes:
        yield ModeMeasurement(mode, status, error, **{"impl_kind": kind, **extra})


def _prepare_call(
    suite: Suite, task: Task, spec: ImplSpec, impl: Implementation, device: str
) -> PreparedCall | Failure:
    """Build the inputs, prepare the call and check it; a failure instead of raising."""
    failure: Failure
    try:
        return build_and_check(suite, task, spec, impl, device)
    except ImplUnavailable as exc:
        return ("unavailable", str(exc), {})
    except Exception as exc:
        failure = ("oom" if is_out_of_memory(exc) else "error", short_error(exc), {})
    # Outside the except block the traceback, and with it the inputs, are gone: free them.
    if failure[0] == "oom":
        free_memory()
    return failure


def _measure_prepared_mode(
    suite: Suite,
    task: Task,
    spec: ImplSpec,
    device: str,
    mode: str,
    prepared: PreparedCall,
    with_stages: bool,
) -> ModeMeasurement:
    """One mode of a checked call: `ok` with its measurements, or why not."""
    common: dict[str, Any] = {
        "density": prepared.density,
        "check_rel_err": prepared.check_rel_err,
        "impl_kind": spec.kind,
        "approx_rel_err": prepared.approx_rel_err,
    }
    if mode != "fwd" and not spec.has_backward:
        return ModeMeasurement(mode, "unavailable", f"{spec.name} has no backward", **common)
    try:
        return _measure_mode(
            suite,
            device,
            mode,
            prepared.forward,
            prepared.inputs,
            task.point.seq_len,
            with_stages,
            cuda_graph=device == "cuda" and suite.timing.cuda_graph and spec.cuda_graph,
            **common,
        )
    except Exception as exc:
        oom = is_out_of_memory(exc)
        if oom:
            free_memory()
        return ModeMeasurement(mode, "oom" if oom else "error", short_error(exc), **common)
    finally:
        for x in prepared.inputs.leaves:
            x.grad = None


def _time_mode(
    suite: Suite,
    device: str,
    mode: str,
    forward: Callable[[], Tensor],
    inputs: AttentionInputs,
    cuda_graph: bool,
) -> tuple[TimingSummary, float | None, TelemetrySummary | None]:
    """Time one mode of the call and measure its peak memory; NVML telemetry of the timing."""
    grad_to_none: list[Tensor] | None = None
    if mode == "fwd":

        def step() -> object:
            with torch.no_grad():
                return forward()

    else:
        out = forward()
        do = output_grad(out, seed=suite.seed)
        grad_to_none = inputs.leaves
        if mode == "bwd":
            # The forward ran once above; only the backward is timed.
            step = lambda: out.backward(do, retain_graph=True)
        else:
            del out
            step = lambda: forward().backward(do)

    # NVML is sampled from a background thread while the row is timed, never in the call.
    with TelemetrySampler.for_current_device(device) as sampler:
        timing = time_call(
            step,
            device=device,
            warmup_ms=suite.timing.warmup_ms,
            rep_ms=suite.timing.rep_ms,
            grad_to_none=grad_to_none,
            cuda_graph=cuda_graph,
        )
    for x in grad_to_none or ():
        x.grad = None
    return timing, peak_allocated_mib(step, device), sampler.summary()


@contextlib.contextmanager
def _side_stream() -> Iterator[None]:
    """Run the block on a new CUDA stream that waits for the current one; synchronise after."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        yield
    torch.cuda.synchronize()


def _measure_mode(
    suite: Suite,
    device: str,
    mode: str,
    forward: Callable[[], Tensor],
    inputs: AttentionInputs,
    seq_len: int,
    with_stages: bool,
    cuda_graph: bool,
    **common: object,
) -> ModeMeasurement:
    # A CUDA graph cannot be captured on the default stream, and autograd issues a backward
    # on its forward's stream: the whole timed part (forward included) runs on one side
    # stream, which first waits for the work that built the inputs.
    with _side_stream() if cuda_graph else contextlib.nullcontext():
        timing, peak, telemetry = _time_mode(suite, device, mode, forward, inputs, cuda_graph)
    nvml = nvml_used_mib() if device == "cuda" else None
    stages = profiled = None
    if with_stages and device == "cuda":
        profiled = profile_call(forward, inputs, mode, seed=suite.seed)
        stages = profile_stages(profiled.events)
    s = suite.shape
    # Dense-equivalent FLOPs of the point (a limit's compacted rows count as the full T).
    dense_tflops = tflops(
        dense_causal_flops(s.batch, s.heads, seq_len, s.head_dim, mode), timing.ms_median
    )
    density = float(common["density"])  # type: ignore[arg-type]
    return ModeMeasurement(
        mode,
        "ok",
        timing=timing,
        tflops_dense_equiv=dense_tflops,
        tflops_effective=None if dense_tflops is None else dense_tflops * density,
        peak_mem_mib=peak,
        nvml_mem_mib=nvml,
        telemetry=telemetry,
        stages=stages,
        profiler=None if profiled is None else profiled.profiler,
        **common,  # type: ignore[arg-type]
    )

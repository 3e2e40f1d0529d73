"""Measure one model step: warm-up, peak memory, timed steps, the attention share.

`measure_step` never raises for a point: bad settings, an implementation that cannot run
here, running out of memory and any other failure come back as the status of a
`StepMeasurement`. Times come from CUDA events around back-to-back steps on a GPU (the host
launching ahead as in training), from the wall clock on the CPU. On a GPU the profiled steps
also give the GPU time of all kernels per step (`gpu_ms`): a step whose time exceeds it by much
is paced by the host (Python and launch costs), not by its kernels. A caller may pass a
telemetry sampler (`scfa_bench.measure.telemetry`) to run around the timed steps.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scfa_bench.constants import LEAD_STEPS
from scfa_bench.e2e.attention import AttentionUnavailable
from scfa_bench.e2e.kernel_share import profile_kernels, split_kernel_times
from scfa_bench.e2e.step import (
    SETTINGS_ERRORS,
    StepConfig,
    StepConfigError,
    TrainStep,
    build_step,
)

QUANTILES = (0.5, 0.2, 0.8)
MIB = 1024 * 1024


@dataclass(frozen=True)
class MeasureSettings:
    """Steps run before timing (compilation happens in the first), timed, and profiled."""

    warmup_steps: int = 3
    timed_steps: int = 10
    profile_steps: int = 3  # 0: no profile (attention share left empty)

    def __post_init__(self) -> None:
        for name, minimum in (("warmup_steps", 1), ("timed_steps", 1), ("profile_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise StepConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class StepMeasurement:
    """One point's result; fields that were not measured are None."""

    status: str  # ok | oom | error | unavailable
    error: str = ""
    ms_median: float | None = None
    ms_q20: float | None = None
    ms_q80: float | None = None
    tokens_per_s: float | None = None
    peak_mem_mib: float | None = None
    attention_ms: float | None = None  # GPU time of attention kernels per step
    attention_share: float | None = None  # attention_ms / GPU time of all kernels per step
    gpu_ms: float | None = None  # GPU time of all kernels per step (profiled steps)
    loss: float | None = None  # of the last timed step
    n_params: int | None = None
    timer: str = ""  # cuda_event | wall_clock
    telemetry: Any = None  # the sampler's summary() over the timed steps, when one was given


def _quantiles(samples: list[float]) -> tuple[float, float, float]:
    # Linear interpolation between sorted samples, as triton's do_bench reports quantiles.
    values = torch.tensor(samples, dtype=torch.float64)
    median, q20, q80 = torch.quantile(values, torch.tensor(QUANTILES, dtype=torch.float64))
    return float(median), float(q20), float(q80)


def _time_steps(run: Callable[[], Tensor], steps: int, device: str) -> tuple[list[float], Tensor]:
    """Milliseconds of each of `steps` back-to-back steps, after LEAD_STEPS untimed ones, and
    the last loss."""
    if device == "cuda":
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        torch.cuda.synchronize()
        for _ in range(LEAD_STEPS):
            run()
        for start, end in events:
            start.record()
            loss = run()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events], loss
    samples = []
    for _ in range(LEAD_STEPS):  # as on a GPU, so the meta's lead_steps hold everywhere
        run()
    for _ in range(steps):
        begin = time.perf_counter()
        loss = run()
        samples.append((time.perf_counter() - begin) * 1e3)
    return samples, loss


def _timer(config: StepConfig) -> str:
    """How the step times were taken: events around replays of a captured step, events
    around eager (or compiled) steps, or the wall clock on the CPU."""
    if config.device != "cuda":
        return "wall_clock"
    return "cuda_graph" if config.cuda_graph else "cuda_event"


def _peak_mib(run: Callable[[], Tensor], device: str) -> float | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / MIB


def is_out_of_memory(exc: BaseException) -> bool:
    """An OOM, also when wrapped (torch.compile re-raises errors inside its own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, torch.OutOfMemoryError) or "out of memory" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else repr(exc)}"


def _build_captured(config: StepConfig) -> tuple[TrainStep, float]:
    """A captured step and its peak memory, taken while it is built (eager warm-up steps and
    the capture, whose pool the graph keeps): a replay allocates nothing."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step = build_step(config)
    torch.cuda.synchronize()
    return step, torch.cuda.max_memory_allocated() / MIB


def _measure(config: StepConfig, settings: MeasureSettings, sampler: Any) -> StepMeasurement:
    device = config.device
    step, peak = _build_captured(config) if config.cuda_graph else (build_step(config), None)
    for _ in range(settings.warmup_steps):
        step.run()
    if peak is None:  # uncaptured: the peak of one more step
        peak = _peak_mib(step.run, device)
    with sampler if sampler is not None else contextlib.nullcontext():
        samples, last_loss = _time_steps(step.run, settings.timed_steps, device)
    median, q20, q80 = _quantiles(samples)
    attention_ms = share = gpu_ms = None
    if device == "cuda" and settings.profile_steps:
        kernels = profile_kernels(step.run, settings.profile_steps)
        times = split_kernel_times(kernels, settings.profile_steps)
        attention_ms, share, gpu_ms = times.attention_ms, times.attention_share, times.total_ms
    loss = float(last_loss)
    if not torch.isfinite(torch.tensor(loss)):
        return StepMeasurement(status="error", error=f"the loss is not finite ({loss})")
    return StepMeasurement(
        status="ok",
        ms_median=median,
        ms_q20=q20,
        ms_q80=q80,
        tokens_per_s=config.tokens / (median / 1e3),
        peak_mem_mib=peak,
        attention_ms=attention_ms,
        attention_share=share,
        gpu_ms=gpu_ms,
        loss=loss,
        n_params=step.n_params,
        timer=_timer(config),
        telemetry=None if sampler is None else sampler.summary(),
    )


def _release_memory(config: StepConfig) -> None:
    if config.compile:
        torch._dynamo.reset()  # compiled graphs may hold the point's tensors
    gc.collect()
    if config.device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_step(
    config: StepConfig, settings: MeasureSettings | None = None, sampler: Any = None
) -> StepMeasurement:
    """Build and measure one step: warm-up, peak memory of one step, timed steps, profile.

    `sampler`: a context manager with `summary()` (a telemetry sampler) entered around the
    timed steps only; its summary becomes the measurement's `telemetry`.

    Never raises for the point itself (Ctrl-C still interrupts): status `error` for bad
    settings or a failure, `unavailable` for an attention that cannot run here, `oom`.
    """
    settings = settings or MeasureSettings()
    try:
        return _measure(config, settings, sampler)
    except SETTINGS_ERRORS as exc:
        return StepMeasurement(status="error", error=str(exc))
    except AttentionUnavailable as exc:
        return StepMeasurement(status="unavailable", error=str(exc))
    except Exception as exc:
        if is_out_of_memory(exc):
            return StepMeasurement(status="oom", error=_first_line(exc))
        return StepMeasurement(status="error", error=_first_line(exc))
    finally:
        _release_memory(config)


__all__ = ["MeasureSettings", "StepMeasurement", "is_out_of_memory", "measure_step"]

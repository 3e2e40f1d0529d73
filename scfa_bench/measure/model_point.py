"""Measure one task of a model suite: a training step of the suite's model whose attention is
the task's implementation (`scfa_bench.e2e`), at the task's seq_len, axis value and `compile`.

One `ModeMeasurement` per task (the suite's one mode, `step` or `step+adamw`). Settings that
cannot run (an unsupported head dim, say) give an `error` row, an attention that cannot run
here `unavailable`, running out of memory `oom`; the sweep goes on.
"""

from __future__ import annotations

from collections.abc import Iterator

from scfa_bench.e2e.measurement import MeasureSettings, StepMeasurement, measure_step
from scfa_bench.e2e.step import StepConfig, StepConfigError
from scfa_bench.measure.memory import nvml_used_mib
from scfa_bench.measure.point import ModeMeasurement
from scfa_bench.measure.telemetry import TelemetrySampler
from scfa_bench.measure.timing import TimingSummary
from scfa_bench.suite.grid import Task
from scfa_bench.suite.schema import Suite


def step_config(suite: Suite, task: Task, device: str) -> StepConfig:
    """The step of `task` (on the CPU only fp32 runs: StepConfigError otherwise)."""
    model = suite.model
    assert model is not None
    point = task.point
    return StepConfig(
        model=model.config,
        batch=model.batch_for(point.seq_len),
        seq_len=point.seq_len,
        attention=task.impl,
        n_buckets=point.n_buckets,
        drop_rate=point.drop_rate,
        dtype=model.dtype,
        compile=bool(point.compile),
        optimizer=model.optimizer,
        cuda_graph=model.cuda_graph,
        device=device,
        seed=suite.seed,
    )


def measure_model_task(suite: Suite, task: Task, device: str) -> Iterator[ModeMeasurement]:
    """Build, warm up, time and profile the step of `task` on `device`."""
    model = suite.model
    assert model is not None
    (mode,) = task.modes
    settings = MeasureSettings(
        warmup_steps=model.steps.warmup,
        timed_steps=model.steps.timed,
        profile_steps=model.steps.profile,
    )
    try:
        config = step_config(suite, task, device)
    except StepConfigError as exc:
        yield ModeMeasurement(mode, "error", str(exc))
        return
    sampler = TelemetrySampler.for_current_device(device)
    yield as_mode_measurement(mode, measure_step(config, settings, sampler), device)


def as_mode_measurement(mode: str, step: StepMeasurement, device: str) -> ModeMeasurement:
    if step.status != "ok":
        return ModeMeasurement(mode, step.status, step.error)
    assert step.ms_median is not None and step.ms_q20 is not None and step.ms_q80 is not None
    return ModeMeasurement(
        mode,
        "ok",
        timing=TimingSummary(step.ms_median, step.ms_q20, step.ms_q80, step.timer),
        peak_mem_mib=step.peak_mem_mib,
        nvml_mem_mib=nvml_used_mib() if device == "cuda" else None,
        tokens_per_s=step.tokens_per_s,
        attention_ms=step.attention_ms,
        attention_share=step.attention_share,
        gpu_ms=step.gpu_ms,
        telemetry=step.telemetry,
    )

"""The CSV row of one measured mode: a task's identity columns plus what was measured."""

from __future__ import annotations

from dataclasses import replace

from scfa_bench.measure.point import ModeMeasurement
from scfa_bench.measure.stages import stage_cell
from scfa_bench.measure.telemetry import TelemetrySummary
from scfa_bench.results.row import ResultRow


def measured_row(base: ResultRow, measured: ModeMeasurement) -> ResultRow:
    """The CSV row of one measured mode."""
    timing = measured.timing
    return replace(
        base,
        status=measured.status,
        error=measured.error,
        density=measured.density,
        check_rel_err=measured.check_rel_err,
        ms_median=None if timing is None else timing.ms_median,
        ms_q20=None if timing is None else timing.ms_q20,
        ms_q80=None if timing is None else timing.ms_q80,
        timer="" if timing is None else timing.timer,
        tflops_dense_equiv=measured.tflops_dense_equiv,
        tflops_effective=measured.tflops_effective,
        peak_mem_mib=measured.peak_mem_mib,
        nvml_mem_mib=measured.nvml_mem_mib,
        tokens_per_s=measured.tokens_per_s,
        attention_ms=measured.attention_ms,
        attention_share=measured.attention_share,
        gpu_ms=measured.gpu_ms,
        impl_kind=measured.impl_kind,
        approx_rel_err=measured.approx_rel_err,
        **telemetry_cells(measured.telemetry),
        stage_ms="" if measured.stages is None else stage_cell(measured.stages),
        gpu_idle_ms=None if measured.stages is None else measured.stages.idle.idle_us / 1000,
    )


def telemetry_cells(summary: TelemetrySummary | None) -> dict[str, object]:
    """The telemetry columns of a row; blank without a summary or samples."""
    if summary is None or not summary.samples:
        return {}
    throttled = {True: "yes", False: "no", None: ""}[summary.throttled]
    return {
        "sm_mhz_min": summary.sm_mhz_min,
        "sm_mhz_median": summary.sm_mhz_median,
        "mem_mhz_median": summary.mem_mhz_median,
        "temp_c_max": summary.temp_c_max,
        "power_w_max": summary.power_w_max,
        "throttle_reasons": "|".join(summary.reasons),
        "throttled": throttled,
    }

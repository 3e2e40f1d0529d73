"""The run loop's profiling additions on the CPU: implementation kinds, limits and the fraction
of the limit, approximations, telemetry (absent, and simulated with a throttled sample) and the
report flagging throttled rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import scfa_bench.measure.point as point_module
from scfa_bench.analysis.frame import prepare
from scfa_bench.analysis.report import write_report
from scfa_bench.impls import limits, registry
from scfa_bench.measure import telemetry
from scfa_bench.measure.point import ModeMeasurement
from scfa_bench.measure.profile_call import CALL_RANGE, GpuEvent
from scfa_bench.measure.stages import parse_stage_cell, profile_stages
from scfa_bench.results.meta import meta_path_for
from scfa_bench.results.reader import read_results
from scfa_bench.results.row import ResultRow
from scfa_bench.run.loop import RunOptions, measured_row, run_suite
from scfa_bench.suite.parse import parse_suite


@pytest.fixture
def math_limits():
    """limit_hash / limit_qk with SDPA's math backend, registered for the CPU."""
    registry.register(name="cpu_limit_hash", pattern="hash", devices=("cpu",))(
        type("CpuLimitHash", (limits.LimitHash,), {"backend_name": "MATH"})
    )
    registry.register(name="cpu_limit_qk", pattern="qk", devices=("cpu",))(
        type("CpuLimitQk", (limits.LimitQk,), {"backend_name": "MATH"})
    )
    yield
    registry.unregister("cpu_limit_hash")
    registry.unregister("cpu_limit_qk")


def _suite(impls, **overrides):
    data = {
        "name": "profiling",
        "shape": {"batch": 1, "heads": 2, "head_dim": 16, "dtype": "fp32"},
        "sweep": {"seq_len": [64], "n_buckets": [2], "drop_rate": [0.5]},
        "implementations": impls,
        "modes": ["fwd", "fwd+bwd"],
        "timing": {"warmup_ms": 0, "rep_ms": 1e-6},
        "device": "cpu",
        **overrides,
    }
    return parse_suite(data, "profiling.yaml")


def _run(tmp_path, impls, **overrides):
    return run_suite(_suite(impls, **overrides), RunOptions(out_dir=tmp_path))


def test_limits_are_checked_against_what_they_compute_and_give_the_fraction(tmp_path, math_limits):
    outcome = _run(tmp_path, ["naive_hash", "naive_qk", "cpu_limit_hash", "cpu_limit_qk"])
    rows = {(r.impl, r.mode): r for r in outcome.rows}
    assert {r.status for r in outcome.rows} == {"ok"}, [r.error for r in outcome.rows]
    for impl in ("cpu_limit_hash", "cpu_limit_qk"):
        assert rows[impl, "fwd"].impl_kind == "limit"
        assert rows[impl, "fwd"].check_rel_err < 1e-5  # against its own dense reference
        assert rows[impl, "fwd"].fraction_of_limit is None
    assert rows["naive_hash", "fwd"].impl_kind == "exact"
    for impl, limit in (("naive_hash", "cpu_limit_hash"), ("naive_qk", "cpu_limit_qk")):
        for mode in ("fwd", "fwd+bwd"):
            expected = rows[limit, mode].ms_median / rows[impl, mode].ms_median
            assert rows[impl, mode].fraction_of_limit == pytest.approx(expected, rel=1e-4)
    # The limit of QK-sparse runs on the compacted rows but its FLOPs are the point's.
    assert rows["cpu_limit_qk", "fwd"].tflops_dense_equiv is not None


def test_an_approximation_reports_its_error_against_the_exact_attention(tmp_path):
    outcome = _run(
        tmp_path, ["reformer_lsh"], sweep={"seq_len": [256], "n_buckets": [2]}, modes=["fwd"]
    )
    (row,) = outcome.rows
    assert row.status == "ok" and row.impl_kind == "approximate"
    assert row.check_rel_err < 5e-3  # its own reference
    assert row.approx_rel_err is not None and row.approx_rel_err > 1e-2  # chunks drop keys


def test_without_nvml_the_telemetry_columns_are_empty_and_the_meta_says_why(tmp_path):
    outcome = _run(tmp_path, ["naive_hash"])
    assert all(r.sm_mhz_median is None and r.throttled == "" for r in outcome.rows)
    meta = json.loads(meta_path_for(outcome.csv_path).read_text())
    assert meta["telemetry"] == {"sampled": False, "note": "no NVML telemetry on cpu"}
    report = write_report(prepare(read_results(outcome.csv_path)), tmp_path / "report")
    assert "No telemetry in this run (no NVML telemetry on cpu)" in report.read_text()


class HotNvml:
    """A card that runs hot: thermal slowdown and a low SM clock in every sample."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return 1410 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetPowerUsage(self, handle):
        return 698_000

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 88

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return 0x20 | 0x40

    def nvmlDeviceGetMaxClockInfo(self, handle, kind):
        return 1980

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 700_000


def test_a_throttled_sample_is_flagged_in_the_csv_meta_and_report(tmp_path, monkeypatch):
    fake = lambda device, period_s=0.01: telemetry.TelemetrySampler(
        nvml=HotNvml(), handle="gpu0", period_s=0.001
    )
    monkeypatch.setattr(point_module.TelemetrySampler, "for_current_device", staticmethod(fake))
    outcome = _run(tmp_path, ["naive_hash"])
    rows = read_results(outcome.csv_path).rows
    assert all(r.throttled == "yes" for r in rows)
    assert all(r.sm_mhz_median == 1410 and r.temp_c_max == 88 for r in rows)
    assert rows[0].throttle_reasons == "sw_thermal_slowdown|hw_thermal_slowdown"
    meta = json.loads(meta_path_for(outcome.csv_path).read_text())
    assert meta["telemetry"]["sampled"] and meta["telemetry"]["throttled_rows"] == len(rows)
    assert meta["telemetry"]["sm_mhz_median"] == 1410
    report = write_report(prepare(read_results(outcome.csv_path)), tmp_path / "report").read_text()
    assert f"**{len(rows)} throttled row(s)**" in report
    assert "| naive_hash | fwd | 64 | 2 |  | **throttled** | 1410 | 1410 | 88 | 698 |" in report


def test_stage_times_go_to_their_columns():
    events = [
        GpuEvent(CALL_RANGE, 0, 100, annotation=True),
        GpuEvent("sparse_attention_fwd_kernel", 0, 60),
        GpuEvent("bucket_sort_pair_kernel", 70, 100),
    ]
    measured = ModeMeasurement("fwd", "ok", stages=profile_stages(events), impl_kind="exact")
    base = ResultRow("s", "scfa_hash", "fwd", 1, 2, 16, 64, 2, None, "fp32")
    row = measured_row(base, measured)
    assert parse_stage_cell(row.stage_ms) == {"plan: sort": 0.03, "forward kernel": 0.06}
    assert row.gpu_idle_ms == pytest.approx(0.01)


def test_profile_stages_on_the_cpu_leaves_the_columns_empty(tmp_path: Path):
    suite = _suite(["naive_hash"], modes=["fwd"])
    outcome = run_suite(suite, RunOptions(out_dir=tmp_path, profile_stages=True))
    assert all(r.status == "ok" and r.stage_ms == "" for r in outcome.rows)

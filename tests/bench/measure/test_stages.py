"""Stage tables from synthetic GPU events: attribution, per-call times, idle gaps, outputs."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest

from scfa_bench.analysis import profile_report
from scfa_bench.measure import stages as ps
from scfa_bench.measure.profile_call import GpuEvent


def _call(offset: float, *, backward: bool = True) -> list[GpuEvent]:
    """One SCFA fwd+bwd call: 100 us span, kernels busy 80 us, three gaps."""
    o = offset
    events = [
        GpuEvent(ps.CALL_RANGE, o + 0, o + 100, annotation=True),
        GpuEvent(ps.FORWARD_RANGE, o + 0, o + 40, annotation=True),
        GpuEvent("reduce_kernel<validate>", o + 0, o + 2),
        GpuEvent("bucket_sort_pair_kernel", o + 5, o + 10),
        GpuEvent("query_tile_ranges_kernel", o + 10, o + 12),
        GpuEvent("sparse_attention_fwd_kernel", o + 12, o + 40),
    ]
    if backward:
        events += [
            GpuEvent(ps.BACKWARD_RANGE, o + 45, o + 100, annotation=True),
            GpuEvent("attention_bwd_delta_kernel", o + 45, o + 47),
            GpuEvent("key_tile_ranges_kernel", o + 47, o + 48),
            GpuEvent("sparse_attention_bwd_dkdv_kernel", o + 50, o + 80),
            GpuEvent("sparse_attention_bwd_dq_kernel", o + 80, o + 90),
            GpuEvent("elementwise_kernel<fill>", o + 90, o + 100),
        ]
    return events


def test_our_kernels_get_their_stages():
    profile = ps.profile_stages(_call(0) + _call(1000))
    stages = {s.stage: s.total_us for s in profile.stages}
    assert stages == {
        "plan: sort": 5,
        "plan: tile ranges": 3,
        "forward kernel": 28,
        ps.FORWARD_OTHER: 2,
        "backward: delta": 2,
        "backward: dK/dV": 30,
        "backward: dQ": 10,
        ps.BACKWARD_OTHER: 10,
    }
    assert [s.stage for s in profile.stages][:2] == ["plan: sort", "plan: tile ranges"]
    assert sum(s.share for s in profile.stages) == pytest.approx(1.0)
    ranges = [r for r in profile.kernels if r.stage == "plan: tile ranges"]
    assert {r.name for r in ranges} == {"query_tile_ranges_kernel", "key_tile_ranges_kernel"}
    assert all(r.calls == 1 for r in profile.kernels)


def test_idle_time_is_the_span_minus_the_kernels():
    idle = ps.profile_stages(_call(0) + _call(1000)).idle
    assert idle.calls == 2
    assert idle.span_us == 100
    assert idle.busy_us == 90
    assert idle.idle_us == 10  # gaps 2 -> 5, 40 -> 45, 48 -> 50
    assert idle.largest_gap_us == 5


def test_overlapping_kernels_are_not_counted_twice_as_busy():
    events = [
        GpuEvent(ps.CALL_RANGE, 0, 50, annotation=True),
        GpuEvent("a", 0, 30),
        GpuEvent("b", 10, 20),  # on another stream, inside a
        GpuEvent("c", 40, 50),
    ]
    idle = ps.profile_stages(events).idle
    assert (idle.span_us, idle.busy_us, idle.idle_us, idle.largest_gap_us) == (50, 40, 10, 10)


def test_kernels_outside_every_call_are_left_out():
    events = [*_call(0), GpuEvent("warmup_kernel", 500, 600)]
    profile = ps.profile_stages(events)
    assert "warmup_kernel" not in {r.name for r in profile.kernels}


def test_without_call_annotations_everything_is_one_call():
    events = [GpuEvent("x", 0, 10), GpuEvent("x", 20, 30), GpuEvent("y", 30, 35)]
    profile = ps.profile_stages(events)
    x = next(r for r in profile.kernels if r.name == "x")
    assert (x.calls, x.total_us, x.mean_us, x.stage) == (2, 20, 10, ps.UNATTRIBUTED)
    assert profile.idle.idle_us == 10 and profile.idle.calls == 1


def test_flex_mask_build_is_its_own_stage_even_nested_in_the_forward():
    events = [
        GpuEvent(ps.CALL_RANGE, 0, 100, annotation=True),
        GpuEvent(ps.FORWARD_RANGE, 0, 100, annotation=True),
        GpuEvent("mask_build", 0, 60, annotation=True),
        GpuEvent("triton_red_fused_create_block_mask_0", 0, 55),
        GpuEvent("permute", 60, 65, annotation=True),
        GpuEvent("gather_kernel", 60, 65),
        GpuEvent("triton_tem_fused_flex_attention_0", 65, 100),
    ]
    stages = {s.stage: s.total_us for s in ps.profile_stages(events).stages}
    assert stages == {"mask build": 55, "permute": 5, ps.FORWARD_OTHER: 35}


def test_markdown_csv_and_columns(tmp_path):
    profile = ps.profile_stages(_call(0))
    text = profile_report.markdown(profile, title="scfa_hash T=16", measured_ms=0.125)
    assert "| forward kernel | 0.028 | 31.1% |" in text
    assert "idle between kernels 0.010 ms" in text
    assert "kernels cover 72.0%" in text and "`sparse_attention_bwd_dq_kernel`" in text
    path = tmp_path / "kernels.csv"
    profile_report.write_csv(profile, path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(profile.kernels)
    assert rows[0]["stage"] == "plan: sort" and float(rows[0]["total_us"]) == 5
    cell = ps.stage_cell(profile)
    assert cell.startswith("plan: sort=0.005;plan: tile ranges=0.003;")
    parsed = ps.parse_stage_cell(cell)
    assert parsed["backward: dK/dV"] == pytest.approx(0.030)
    assert list(parsed) == [s.stage for s in profile.stages]
    assert ps.parse_stage_cell("") == {}


def test_export_trace_writes_through_the_profiler(tmp_path):
    written = []
    prof = SimpleNamespace(export_chrome_trace=lambda path: written.append(path))
    assert profile_report.export_trace(prof, tmp_path / "t.json") == tmp_path / "t.json"
    assert written == [str(tmp_path / "t.json")]


def test_chunk_parallel_sort_kernels_are_the_sort_stage():
    for name in ("bucket_histogram_kernel", "bucket_scatter_kernel"):
        assert ps.stage_of(GpuEvent(name, 0, 1), []) == "plan: sort"

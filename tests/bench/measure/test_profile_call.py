"""Reading GPU events from a profiler result (fake events: the CPU has no CUDA kernels)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType

from scfa_bench.impls import flex_sparse
from scfa_bench.measure import profile_call as pc
from scfa_bench.measure import stages as ps


def evt(name, start, end, device=DeviceType.CUDA, annotation=False, **extra):
    return SimpleNamespace(
        name=name,
        device_type=device,
        time_range=SimpleNamespace(start=start, end=end),
        is_user_annotation=annotation,
        **extra,
    )


def test_gpu_annotations_are_read_as_they_are():
    prof = SimpleNamespace(
        events=lambda: [
            evt("aten::mm", 0, 5, device=DeviceType.CPU),
            evt("mask_build", 1, 9, annotation=True),
            evt(pc.CALL_RANGE, 0, 10),  # a known range name without the flag (older torch)
            evt("sm90_gemm", 1, 3),
        ]
    )
    events = pc.gpu_events(prof)
    assert sorted((e.name, e.annotation) for e in events) == [
        ("mask_build", True),
        ("scfa_bench.call", True),
        ("sm90_gemm", False),
    ]


def test_without_gpu_annotations_ranges_are_rebuilt_from_the_cpu_side():
    cpu = DeviceType.CPU
    call = evt(pc.CALL_RANGE, 0, 100, device=cpu, id=1, cpu_parent=None)
    fwd = evt(pc.FORWARD_RANGE, 1, 20, device=cpu, id=2, cpu_parent=call)
    mask = evt("mask_build", 2, 10, device=cpu, id=3, cpu_parent=fwd)
    op = evt("aten::sort", 3, 4, device=cpu, id=4, cpu_parent=mask)
    flex = evt("flex_attention", 11, 12, device=cpu, id=5, cpu_parent=fwd)
    engine = evt("autograd::engine::evaluate_function: FlexBackward", 21, 60, device=cpu, id=6)
    bwd_op = evt("FlexBackward", 22, 59, device=cpu, id=7, cpu_parent=engine)
    kernels = [
        evt("sort_kernel", 5, 8, linked_correlation_id=4),
        evt("triton_tem_fused_0", 12, 40, linked_correlation_id=5),
        evt("triton_tem_fused_1", 41, 90, linked_correlation_id=7),
        evt("stray_kernel", 150, 160, linked_correlation_id=4),  # outside every call
    ]
    prof = SimpleNamespace(events=lambda: [call, fwd, mask, op, flex, engine, bwd_op, *kernels])
    events = pc.gpu_events(prof)
    spans = {(e.name, e.start_us, e.end_us) for e in events if e.annotation}
    assert spans == {
        (pc.CALL_RANGE, 0, 100),
        ("mask_build", 5, 8),
        (pc.FORWARD_RANGE, 5, 40),
        (pc.BACKWARD_RANGE, 41, 90),
    }
    stages = {s.stage: s.total_us for s in ps.profile_stages(events).stages}
    assert stages == {"mask build": 3, ps.FORWARD_OTHER: 28, ps.BACKWARD_OTHER: 49}


def test_implementations_mark_ranges_the_stage_table_knows():
    assert flex_sparse.MASK_BUILD_STAGE in pc.RANGE_STAGES
    assert flex_sparse.PERMUTE_STAGE in pc.RANGE_STAGES


def test_profile_call_refuses_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    x = torch.zeros(1, 4, 1, 16)
    from scfa_bench.impls.base import AttentionInputs

    with pytest.raises(RuntimeError, match="CUDA"):
        pc.profile_call(lambda: x, AttentionInputs(x, x, x), "fwd")
    with pytest.raises(ValueError, match="mode"):
        pc.profile_call(lambda: x, AttentionInputs(x, x, x), "sideways")

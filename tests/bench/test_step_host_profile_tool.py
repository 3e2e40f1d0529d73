"""`tools/gpu_step_host_profile.py`: the GPU idle-time accounting it reports (the tool itself
needs a GPU)."""

from __future__ import annotations

import pytest

from .tool_loader import load_tool


def test_idle_gaps_are_charged_to_the_kernel_the_gpu_waited_for() -> None:
    idle = load_tool("gpu_step_host_profile").gpu_idle_by_kernel
    busy, span, before = idle(
        [
            ("late", 300.0, 350.0),  # out of order on purpose: sorted by start
            ("a", 0.0, 100.0),
            ("overlap", 50.0, 150.0),  # overlaps a: no gap, union counted once
            ("near", 160.0, 200.0),  # 10 us gap: launch latency, not charged
            ("late", 500.0, 510.0),
        ]
    )
    assert span == pytest.approx(510.0)
    assert busy == pytest.approx(150.0 + 40.0 + 50.0 + 10.0)
    assert before == {"late": pytest.approx(100.0 + 150.0)}


def test_no_kernels_give_zeros() -> None:
    busy, span, before = load_tool("gpu_step_host_profile").gpu_idle_by_kernel([])
    assert (busy, span, dict(before)) == (0.0, 0.0, {})

"""`tools/gpu_step_host_profile.py`: the GPU idle-time accounting it reports (the tool itself
needs a GPU)."""

from __future__ import annotations

import json

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


def test_points_loop_records_errors_and_goes_on(tmp_path) -> None:
    run_points = load_tool("e2e_probe_points").run_points
    seen = []

    def measure(impl: str, axes: dict, compiled: bool) -> dict:
        seen.append((impl, compiled))
        if impl == "bad":
            raise RuntimeError("out of memory")
        return {"ms": 1.0}

    path = tmp_path / "report.json"
    points = (("good", {"n_buckets": 8}), ("bad", {}))
    report = run_points(points, "both", path, measure, lambda row: f"{row['ms']} ms")
    assert seen == [("good", False), ("bad", False), ("good", True), ("bad", True)]
    assert report["points"]["bad {} compile=True"] == {"error": "RuntimeError: out of memory"}
    assert report["points"]["good {'n_buckets': 8} compile=False"] == {"ms": 1.0}
    assert json.loads(path.read_text()) == report

"""`tools/limit_breakdown.py`: our profiled call split into plan / forward / backward against the
limit's kernels at the same point, from the files `scfa-bench profile` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from .tool_loader import load_tool


def _write(folder: Path, stem: str, kernels: list[tuple[str, str, float]], call_ms: float) -> None:
    lines = ["kernel,stage,calls,total_us,mean_us,share"]
    lines += [f"{name},{stage},1,{us},{us},0.1" for name, stage, us in kernels]
    (folder / f"{stem}_fwd-bwd.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / f"{stem}_fwd-bwd.md").write_text(
        f"### {stem}\n\nMeasured call time {call_ms:.3f} ms: kernels cover 99%\n", encoding="utf-8"
    )


@pytest.fixture
def profiles(tmp_path: Path) -> list[Path]:
    d64, d128 = tmp_path / "prof_hash", tmp_path / "prof_hash_d128"
    for folder in (d64, d128):
        folder.mkdir()
        ours = [
            ("bucket_scatter_kernel", "plan: sort", 200.0),
            ("key_tile_ranges_kernel", "plan: tile ranges", 100.0),
            ("sparse_attention_fwd_kernel", "forward kernel", 4000.0),
            ("sparse_attention_fwd_combine_kernel", "forward: merge", 0.0),
            ("attention_bwd_delta_kernel", "backward: delta", 500.0),
            ("sparse_attention_bwd_dkdv_kernel", "backward: dK/dV", 5500.0),
            ("sparse_attention_bwd_dq_kernel", "backward: dQ", 4000.0),
        ]
        _write(folder, "scfa_hash_T16384_nb8", ours, call_ms=15.0)
        limit = [
            ("cudnn_generated_sdpa_sm90_flash_fprop_wgmma", "unattributed", 2000.0),
            ("cudnn_generated_sdpa_sm90_flash_bprop_wgmma", "unattributed", 5000.0),
            ("void cudnn::fusion::compute_dot_do_o_specialized<true", "unattributed", 500.0),
            ("void cudnn::fusion::convert_dq_to_16bits<true>", "unattributed", 500.0),
            ("Memset (Device)", "unattributed", 1.0),
        ]
        _write(folder, "limit_hash_T16384_nb8", limit, call_ms=8.0)
    _write(d64, "scfa_hash_T4096_nb8", ours, call_ms=15.0)  # no limit at this point: skipped
    return [d64, d128]


def test_our_call_splits_into_plan_forward_and_backward_against_the_limits(profiles) -> None:
    tool = load_tool("limit_breakdown")
    text = tool.table(tool.collect(profiles))
    rows = [line for line in text.splitlines()[2:]]
    assert len(rows) == 2  # one per head dim; the point without a limit is left out
    d64 = next(r for r in rows if r.startswith("| hash | 64 |"))
    cells = [c.strip() for c in d64.strip("|").split("|")]
    assert cells[2:] == [
        "16384",
        "nb8",
        "15.000",
        "8.000",
        "0.53",  # 8 / 15
        "0.300",  # sort + ranges
        "4.000 (2.000)",  # forward and its merge, against cuDNN's fprop
        "0.50",
        "10.000 (6.000)",  # delta + dK/dV + dQ, against bprop + dot(dO, O) + dQ conversion
        "0.60",
        "0.700",  # 15 ms measured, 14.3 ms of kernels
    ]
    assert any(r.startswith("| hash | 128 | 16384 | nb8 |") for r in rows)


def test_the_limits_memsets_are_neither_forward_nor_backward() -> None:
    part_of = load_tool("limit_breakdown").part_of
    assert part_of("limit", "Memset (Device)", "unattributed") == "other"
    assert part_of("limit", "x_flash_fprop_y", "unattributed") == "fwd"
    assert part_of("scfa", "sparse_attention_bwd_store_rows_kernel", "backward: dQ") == "bwd"

"""The GPU check scripts of `tools/` on a machine without a GPU: each one loads, documents itself,
parses its options through `main(argv)`, and refuses cleanly (exit 2) instead of failing halfway;
the LSH check's CPU-side reference and comparison are checked against the definition they
judge."""

from __future__ import annotations

import pytest
import torch

from .tool_loader import load_tool

GPU_SCRIPTS = ("gpu_kernel_check", "gpu_lsh_check", "gpu_profile_check", "e2e_gpu_check", "tune")


@pytest.mark.parametrize("name", GPU_SCRIPTS)
def test_gpu_script_documents_itself_and_parses_help(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tool = load_tool(name)
    assert tool.__doc__ and len(tool.__doc__.strip().splitlines()) >= 3, f"{name}: no docstring"
    with pytest.raises(SystemExit) as done:
        tool.main(["--help"])
    assert done.value.code == 0
    first_words = " ".join(tool.__doc__.split()[:4])
    assert first_words in " ".join(capsys.readouterr().out.split())


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
@pytest.mark.parametrize("name", GPU_SCRIPTS)
def test_gpu_script_without_cuda_exits_2_and_says_why(
    name: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path)] if name == "tune" else []
    assert load_tool(name).main(argv) == 2
    assert "cuda" in capsys.readouterr().err.lower()
    assert not list(tmp_path.iterdir()), "nothing is written before the device check"


def test_tune_rejects_an_unknown_section_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        load_tool("tune").main(["--sections", "base,sparse_swep"])
    assert done.value.code == 2
    assert "sparse_swep" in capsys.readouterr().err


def test_lsh_reference_matches_the_unfused_definition_on_the_same_draw() -> None:
    lsh = load_tool("gpu_lsh_check")
    B, T, H, D, NB = 2, 48, 3, 16, 8
    x = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(1))
    ids = lsh.unfused_lsh_buckets(x, NB, torch.Generator().manual_seed(7))
    rotations = torch.randn((H, D, NB // 2), generator=torch.Generator().manual_seed(7))
    rotations = rotations / rotations.norm(dim=1, keepdim=True)
    ref, near = lsh.reference64(x, rotations)
    assert ref.shape == ids.shape == (B, T, H)
    assert int(ref.min()) >= 0 and int(ref.max()) < NB
    result = lsh.compare(ids, ref, near)
    assert result["ok"] and result["rows"] == B * T * H
    # The rotated coordinates +p and -p both count: a row whose best is a negated
    # coordinate lands in the upper half of the ids.
    assert int((ref >= NB // 2).sum()) > 0


def test_lsh_compare_excuses_near_ties_only() -> None:
    compare = load_tool("gpu_lsh_check").compare
    ids = torch.tensor([0, 1, 2, 3], dtype=torch.int32)
    other = torch.tensor([0, 5, 2, 6], dtype=torch.int32)
    near = torch.tensor([False, True, False, False])
    result = compare(ids, other, near)
    assert result == {
        "rows": 4,
        "mismatches": 2,
        "mismatches_not_near_tie": 1,
        "near_ties": 1,
        "ok": False,
    }
    assert compare(ids, other, torch.tensor([False, True, False, True]))["ok"]

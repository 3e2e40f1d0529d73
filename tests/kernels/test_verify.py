"""scfa_kernels.verify: its CPU path end to end, the sampled-rows path, and that it can fail."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scfa_kernels import verify


@pytest.mark.slow
def test_cpu_run_passes_and_writes_json(tmp_path, interpreter_subprocess):
    path = tmp_path / "verify.json"
    argv = ["--cpu", "--seq-lens", "40", "--head-dims", "16", "--dtypes", "fp32"]
    assert verify.main([*argv, "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert {"device", "torch", "triton"} <= set(data["environment"])
    assert len(data["results"]) == 2  # hash and qk
    for row in data["results"]:
        assert row["passed"] and row["rows_checked"] == 40
        assert all(math.isfinite(row[k]) for k in ("err_out", "err_dq", "err_dk", "err_dv"))


@pytest.mark.slow
def test_long_sequence_path_compares_a_sample_of_rows(device):
    case = verify.Case("lsh", 4, "fp16", 32, 200, 1, 2)
    result = verify.run_case(case, device, sample_rows=32, full_max_t=64, seed=3)
    assert result.rows_checked == 32
    assert result.passed, result


@pytest.mark.slow
def test_a_wrong_kernel_fails(monkeypatch, device, capsys):
    real = verify.hash_sparse_attention

    def off_by_scale(q, k, v, q_hash, k_hash, sm_scale=None, n_buckets=None):
        return real(q, k, v, q_hash, k_hash, 1.1 / math.sqrt(q.shape[-1]), n_buckets)

    monkeypatch.setattr(verify, "hash_sparse_attention", off_by_scale)
    case = verify.Case("hash", 1, "fp32", 16, 48, 1, 2)
    result = verify.run_case(case, device, sample_rows=256, full_max_t=2048, seed=0)
    assert not result.passed and result.err_out > result.tolerance.out
    # In-process on both paths (--cpu would re-run itself without the patch when CUDA is on).
    dtype_args = ["--dtypes", "fp16"] if device == "cuda" else ["--cpu", "--dtypes", "fp32"]
    argv = ["--seq-lens", "48", "--head-dims", "16", "--patterns", "hash-1", *dtype_args]
    assert verify.main(argv) == 1
    assert "FAIL" in capsys.readouterr().out


def test_an_exception_is_a_failed_case_not_a_crash(monkeypatch, device):
    def boom(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(verify, "run_case", boom)
    case = verify.Case("qk", 0.5, "fp16", 64, 64, 1, 1)
    result = verify.run_case_safely(case, device, sample_rows=8, full_max_t=64, seed=0)
    assert not result.passed and "kernel exploded" in result.problems[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_without_cuda_exits_2_with_a_message(capsys):
    assert verify.main([]) == 2
    assert "No CUDA" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--patterns", "foo-1"],
        ["--patterns", "qk-1.5"],
        ["--patterns", "lsh-3"],
        ["--seq-lens", "0"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    assert verify.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_default_grid_covers_the_issue():
    cases = verify.build_cases(verify.PATTERNS, ["fp16", "bf16"], [64, 128], [1024, 8192], 2048)
    assert len(cases) == len(verify.PATTERNS) * 2 * 2 * 2
    assert {(c.pattern, c.sparsity) for c in cases} == {
        ("hash", 1),
        ("hash", 8),
        ("lsh", 8),
        ("qk", 0.5),
    }
    assert all((c.batch, c.heads) == ((2, 4) if c.seq_len <= 2048 else (1, 8)) for c in cases)

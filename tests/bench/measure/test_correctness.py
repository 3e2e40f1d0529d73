"""The reference check: row sampling, error measure, sampled check at long T."""

from __future__ import annotations

import pytest
import torch

from scfa_bench.measure.correctness import (
    ALL_ROWS_MAX_SEQ_LEN,
    check_against_reference,
    relative_error,
    sample_rows,
)
from scfa_bench.measure.inputs import make_inputs
from scfa_bench.suite.grid import Point
from scfa_bench.suite.schema import Shape
from scfa_kernels import reference
from scfa_kernels.tolerances import DTYPE_NAMES, TOLERANCES


def test_short_sequences_check_every_row() -> None:
    assert torch.equal(sample_rows(100, 256, seed=0), torch.arange(100))
    assert sample_rows(ALL_ROWS_MAX_SEQ_LEN, 16, seed=0).numel() == ALL_ROWS_MAX_SEQ_LEN


def test_long_sequences_sample_rows_with_edges() -> None:
    rows = sample_rows(4096, 64, seed=0)
    assert rows.numel() == 64 and rows.unique().numel() == 64
    assert rows[0] == 0 and rows[-1] == 4095 and bool((rows[1:] > rows[:-1]).all())
    assert torch.equal(rows, sample_rows(4096, 64, seed=0))
    assert not torch.equal(rows, sample_rows(4096, 64, seed=1))


def test_relative_error_measure() -> None:
    ref = torch.tensor([1.0, -4.0, 2.0])
    assert relative_error(ref, ref) == 0.0
    # Norm-relative: ||(0, 0.4, 0)|| / ||(1, -4, 2)||.
    assert relative_error(ref + torch.tensor([0.0, 0.4, 0.0]), ref) == pytest.approx(0.4 / 21**0.5)
    assert relative_error(torch.tensor([0.0, float("nan"), 0.0]), ref) == float("inf")
    assert relative_error(torch.tensor([0.5]), torch.tensor([0.0])) == 0.5  # all-zero reference


@pytest.mark.parametrize("with_grads", [False, True])
def test_sampled_check_at_long_seq_len(with_grads: bool) -> None:
    shape = Shape(batch=1, heads=1, head_dim=16, dtype="fp32")
    inputs = make_inputs(
        shape, Point(2048, n_buckets=4), seed=0, device="cpu", requires_grad=with_grads
    )

    def exact() -> torch.Tensor:
        return reference.hash_sparse_attention(
            inputs.q, inputs.k, inputs.v, inputs.q_hash, inputs.k_hash
        )

    rows = sample_rows(2048, 64, seed=0)
    kwargs = dict(dtype="fp32", rows=rows, with_grads=with_grads, seed=0)
    good = check_against_reference(exact, inputs, **kwargs)
    assert good.passed and good.rel_err < 1e-5
    # one wrong sampled row is caught
    row = int(rows[10])

    def one_row_off() -> torch.Tensor:
        out = exact().clone()
        out[:, row] += 1.0
        return out

    bad = check_against_reference(one_row_off, inputs, **kwargs)
    assert not bad.passed and "out rel err" in bad.detail
    assert all(x.grad is None for x in inputs.leaves)  # the check leaves no gradients behind


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
@pytest.mark.parametrize("with_grads", [False, True])
def test_one_percent_off_fails_and_within_tolerance_passes(dtype: str, with_grads: bool) -> None:
    """The check uses the one table of scfa_kernels.tolerances: every bound is under 1%."""
    shape = Shape(batch=1, heads=2, head_dim=16, dtype=dtype)
    inputs = make_inputs(shape, Point(64, n_buckets=2), seed=0, device="cpu", requires_grad=True)
    tolerance = TOLERANCES[DTYPE_NAMES[dtype]]
    within = 1 + 0.5 * min(tolerance.out, tolerance.grad)

    def scaled(factor: float):
        def forward() -> torch.Tensor:
            q, k, v = (x.float() for x in inputs.leaves)
            out = reference.hash_sparse_attention(q, k, v, inputs.q_hash, inputs.k_hash)
            return out * factor  # gradients scale by the same factor

        return forward

    rows = sample_rows(64, 64, seed=0)
    kwargs = dict(dtype=dtype, rows=rows, with_grads=with_grads, seed=0)
    assert check_against_reference(scaled(within), inputs, **kwargs).passed
    off = check_against_reference(scaled(1.01), inputs, **kwargs)
    assert not off.passed and off.rel_err == pytest.approx(0.01, rel=0.05), off.detail

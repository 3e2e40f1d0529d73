"""FLOPs and exact density against brute-force counting on the reference masks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scfa_bench.measure.metrics import dense_causal_flops, density, tflops
from scfa_kernels import reference


def test_flops_convention() -> None:
    b, h, t, d = 2, 3, 100, 16
    fwd = dense_causal_flops(b, h, t, d, "fwd")
    assert fwd == 4 * b * h * t * t * d / 2
    assert dense_causal_flops(b, h, t, d, "bwd") == pytest.approx(2.5 * fwd)
    assert dense_causal_flops(b, h, t, d, "fwd+bwd") == pytest.approx(3.5 * fwd)
    assert tflops(2e12, 1000.0) == pytest.approx(2.0)
    assert tflops(1.0, None) is None


def _brute_density(mask: torch.Tensor, t: int) -> float:
    b, h = mask.shape[:2]
    return mask.sum().item() / (b * h * t * (t + 1) / 2)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2),
    t=st.integers(1, 40),
    h=st.integers(1, 3),
    nb=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_hash_density_matches_mask_count(b: int, t: int, h: int, nb: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    q_hash = torch.randint(0, nb, (b, t, h), generator=gen)
    k_hash = torch.randint(0, nb, (b, t, h), generator=gen)
    expected = _brute_density(reference.hash_mask(q_hash, k_hash), t)
    assert density(q_hash=q_hash, k_hash=k_hash) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2),
    t=st.integers(1, 40),
    h=st.integers(1, 3),
    p=st.floats(0.0, 0.95),
    seed=st.integers(0, 1000),
)
def test_qk_density_matches_mask_count(b: int, t: int, h: int, p: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    q_keep = torch.rand((b, t, h), generator=gen) >= p
    k_keep = torch.rand((b, t, h), generator=gen) >= p
    expected = _brute_density(reference.qk_mask(q_keep, k_keep), t)
    assert density(q_keep=q_keep, k_keep=k_keep) == pytest.approx(expected, abs=1e-12)


def test_dense_and_one_bucket_density_is_one() -> None:
    zeros = torch.zeros((1, 50, 2), dtype=torch.int32)
    assert density() == 1.0
    assert density(q_hash=zeros, k_hash=zeros) == 1.0

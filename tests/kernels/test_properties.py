"""Property-based tests: random small shapes and patterns, kernel == reference, fwd and bwd.

Hypothesis picks B, T, H, D, the bucket count or per-head drop rates and the dtype; the
examples stay tiny so the interpreter runs each in well under a second.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scfa_kernels.testing import SparsityMask, check_backward, check_forward, make_qkv

# On a CPU every case runs the kernels through Triton's interpreter: seconds each.
pytestmark = pytest.mark.slow

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,  # the same examples every run: CI stays reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

shapes = st.tuples(
    st.integers(1, 2),  # B
    st.integers(1, 96),  # T
    st.integers(1, 3),  # H
    st.sampled_from([16, 32]),  # D
)
dtypes = st.sampled_from([torch.float16, torch.float32])


@SETTINGS
@given(shape=shapes, n_buckets=st.integers(1, 6), dtype=dtypes, seed=st.integers(0, 2**16))
def test_hash_matches_reference(device, shape, n_buckets, dtype, seed):
    b, t, h, d = shape
    gen = torch.Generator().manual_seed(seed)
    q_hash, k_hash = (torch.randint(0, n_buckets, (b, t, h), generator=gen) for _ in range(2))
    pattern = SparsityMask("hash", q_hash.to(device), k_hash.to(device))
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed)
    check_forward(pattern, q, k, v)
    check_backward(pattern, q, k, v, seed=seed)


@SETTINGS
@given(
    shape=shapes,
    drops=st.lists(st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0]), min_size=3, max_size=3),
    dtype=dtypes,
    seed=st.integers(0, 2**16),
)
def test_qk_matches_reference(device, shape, drops, dtype, seed):
    b, t, h, d = shape
    gen = torch.Generator().manual_seed(seed)
    p_drop = torch.tensor(drops[:h])  # one drop rate per head
    q_keep, k_keep = (torch.rand(b, t, h, generator=gen) >= p_drop for _ in range(2))
    pattern = SparsityMask("qk", q_keep.to(device), k_keep.to(device))
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed)
    check_forward(pattern, q, k, v)
    check_backward(pattern, q, k, v, seed=seed)

"""Forward of the Triton kernels against the dense reference (CPU interpreter or CUDA).

Shapes stay tiny (T <= 256, B*H <= 8) because the interpreter runs every program in Python.
Every comparison also asserts that stranded queries output exactly 0.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import scfa_kernels
from scfa_kernels import validation
from scfa_kernels.testing import (
    TOLERANCES,
    SparsityMask,
    assert_matches,
    check_forward,
    make_qkv,
    random_hash,
    random_keep,
)

# On a CPU every case runs the kernels through Triton's interpreter: seconds each.
pytestmark = pytest.mark.slow

DTYPES = [torch.float16, torch.float32]
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="bfloat16 kernels need CUDA (tl.dot on bf16 is wrong in the interpreter)",
)


# ---------------------------------------------------------------- random patterns


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "fp32"])
@pytest.mark.parametrize(
    ("b", "t", "h", "d", "n_buckets"),
    [(1, 64, 2, 16, 2), (2, 97, 1, 32, 3), (1, 128, 2, 64, 4), (1, 256, 1, 32, 8)],
)
def test_hash_forward_random(device, dtype, b, t, h, d, n_buckets):
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=t + d)
    check_forward(random_hash(b, t, h, n_buckets, device, seed=n_buckets), q, k, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "fp32"])
@pytest.mark.parametrize(
    ("b", "t", "h", "d", "drop"),
    [(1, 64, 2, 16, 0.5), (2, 97, 1, 32, 0.2), (1, 128, 2, 64, 0.8), (1, 256, 1, 32, 0.5)],
)
def test_qk_forward_random(device, dtype, b, t, h, d, drop):
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=t + d + 1)
    check_forward(random_keep(b, t, h, drop, device, seed=t), q, k, v)


@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_forward_head_dim_128(device, kind):
    q, k, v = make_qkv(1, 80, 1, 128, torch.float16, device, seed=5)
    pattern = (
        random_hash(1, 80, 1, 2, device, seed=5)
        if kind == "hash"
        else random_keep(1, 80, 1, 0.3, device, seed=5)
    )
    check_forward(pattern, q, k, v)


# ---------------------------------------------------------------- dense edges


def _sdpa_causal(q, k, v, scale=None):
    """torch's dense causal attention in float32, (B, T, H, D)."""
    q, k, v = (x.float().transpose(1, 2) for x in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale).transpose(1, 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "fp32"])
def test_one_bucket_equals_dense_causal(device, dtype):
    b, t, h, d = 1, 100, 2, 32
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=11)
    zeros = torch.zeros(b, t, h, dtype=torch.int64, device=device)
    out = check_forward(SparsityMask("hash", zeros, zeros), q, k, v)
    assert_matches(out.float().cpu(), _sdpa_causal(q, k, v).cpu(), TOLERANCES[dtype].out, "sdpa")


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "fp32"])
def test_all_kept_equals_dense_causal(device, dtype):
    b, t, h, d = 2, 70, 1, 16
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=12)
    keep = torch.ones(b, t, h, dtype=torch.bool, device=device)
    out = check_forward(SparsityMask("qk", keep, keep), q, k, v)
    assert_matches(out.float().cpu(), _sdpa_causal(q, k, v).cpu(), TOLERANCES[dtype].out, "sdpa")


# ---------------------------------------------------------------- empty edges


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "fp32"])
def test_every_query_stranded_outputs_zeros(device, dtype):
    b, t, h, d = 1, 90, 2, 16
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=13)
    q_hash = torch.zeros(b, t, h, dtype=torch.int64, device=device)
    out = scfa_kernels.hash_sparse_attention(q, k, v, q_hash, q_hash + 1)
    assert out.shape == q.shape and out.dtype == dtype
    assert torch.count_nonzero(out) == 0 and not torch.isnan(out).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "fp32"])
def test_nothing_kept_outputs_zeros(device, dtype):
    b, t, h, d = 2, 50, 1, 32
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=14)
    keep = torch.ones(b, t, h, dtype=torch.bool, device=device)
    for q_keep, k_keep in ((~keep, ~keep), (keep, ~keep), (~keep, keep)):
        out = scfa_kernels.qk_sparse_attention(q, k, v, q_keep, k_keep)
        assert torch.count_nonzero(out) == 0 and not torch.isnan(out).any()


# ---------------------------------------------------------------- lengths and layouts


@pytest.mark.parametrize("t", [1, 7, 65, 130, 200])
@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_seq_len_not_multiple_of_block(device, kind, t):
    q, k, v = make_qkv(1, t, 2, 16, torch.float32, device, seed=t)
    pattern = (
        random_hash(1, t, 2, 3, device, seed=t)
        if kind == "hash"
        else random_keep(1, t, 2, 0.4, device, seed=t)
    )
    check_forward(pattern, q, k, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "fp32"])
def test_t_equals_one_is_the_value_row(device, dtype):
    q, k, v = make_qkv(2, 1, 3, 16, dtype, device, seed=15)
    zeros = torch.zeros(2, 1, 3, dtype=torch.int32, device=device)
    out = scfa_kernels.hash_sparse_attention(q, k, v, zeros, zeros)
    # One allowed key: softmax weight 1, the output is v itself.
    torch.testing.assert_close(out, v, rtol=1e-3, atol=1e-3)


def test_heads_with_different_drop_rates(device):
    b, t, h, d = 1, 120, 4, 16
    q, k, v = make_qkv(b, t, h, d, torch.float32, device, seed=16)
    pattern = random_keep(b, t, h, [0.0, 0.3, 0.9, 1.0], device, seed=16)
    kept_per_head = pattern.a.sum(dim=(0, 1)).tolist()
    assert kept_per_head[0] == t and kept_per_head[3] == 0 and kept_per_head[1] > kept_per_head[2]
    out = check_forward(pattern, q, k, v)
    assert torch.count_nonzero(out[:, :, 3]) == 0


@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_non_contiguous_inputs(device, kind):
    b, t, h, d = 2, 60, 2, 32
    # Transposed views of (B, H, T, D) tensors, the layout many models hold.
    q, k, v = (
        x.transpose(1, 2).contiguous().transpose(1, 2)
        for x in make_qkv(b, t, h, d, torch.float32, device, seed=17)
    )
    assert not q.is_contiguous() and q.shape == (b, t, h, d)
    pattern = (
        random_hash(b, t, h, 2, device, seed=17)
        if kind == "hash"
        else random_keep(b, t, h, 0.5, device, seed=17)
    )
    # The pattern tensors non-contiguous too: a (B, H, T) tensor seen as (B, T, H).
    a, c = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (pattern.a, pattern.c))
    assert not a.is_contiguous()
    pattern = SparsityMask(kind, a, c)
    out = check_forward(pattern, q, k, v)
    dense_out = pattern.kernel(q.contiguous(), k.contiguous(), v.contiguous())
    torch.testing.assert_close(out, dense_out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ids", [(3, 1000), (0, validation.MAX_BUCKET_ID)])
def test_bucket_ids_with_gaps_and_large_values(device, ids):
    b, t, h, d = 1, 100, 2, 16
    q, k, v = make_qkv(b, t, h, d, torch.float32, device, seed=18)
    base = random_hash(b, t, h, 2, device, seed=18)
    lo, hi = ids
    as_ids = lambda x: torch.where(x == 0, lo, hi).to(torch.int64)
    check_forward(SparsityMask("hash", as_ids(base.a), as_ids(base.c)), q, k, v)


@pytest.mark.parametrize("hash_dtype", [torch.int32, torch.int64, torch.int16, torch.uint8])
def test_hash_integer_dtypes_agree(device, hash_dtype):
    b, t, h, d = 1, 40, 1, 16
    q, k, v = make_qkv(b, t, h, d, torch.float32, device, seed=19)
    base = random_hash(b, t, h, 3, device, seed=19)
    out64 = base.kernel(q, k, v)
    cast = SparsityMask("hash", base.a.to(hash_dtype), base.c.to(hash_dtype))
    torch.testing.assert_close(cast.kernel(q, k, v), out64, rtol=0, atol=0)


def test_batches_with_different_patterns(device):
    b, t, h, d = 3, 64, 1, 16
    q, k, v = make_qkv(b, t, h, d, torch.float32, device, seed=20)
    # Batch 0: one bucket; batch 1: 4 buckets; batch 2: every query stranded.
    q_hash = torch.zeros(b, t, h, dtype=torch.int64)
    k_hash = torch.zeros(b, t, h, dtype=torch.int64)
    gen = torch.Generator().manual_seed(20)
    q_hash[1] = torch.randint(0, 4, (t, h), generator=gen)
    k_hash[1] = torch.randint(0, 4, (t, h), generator=gen)
    k_hash[2] = 7
    pattern = SparsityMask("hash", q_hash.to(device), k_hash.to(device))
    out = check_forward(pattern, q, k, v)
    assert torch.count_nonzero(out[2]) == 0 and torch.count_nonzero(out[0]) > 0
    # Each batch alone gives the same rows: batches do not leak into each other.
    alone = SparsityMask("hash", pattern.a[1:2], pattern.c[1:2]).kernel(q[1:2], k[1:2], v[1:2])
    torch.testing.assert_close(out[1:2], alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_sm_scale_given(device, kind):
    b, t, h, d = 1, 72, 2, 32
    q, k, v = make_qkv(b, t, h, d, torch.float32, device, seed=21)
    pattern = (
        random_hash(b, t, h, 2, device, seed=21)
        if kind == "hash"
        else random_keep(b, t, h, 0.3, device, seed=21)
    )
    scaled = check_forward(pattern, q, k, v, sm_scale=0.9)
    default = pattern.kernel(q, k, v)
    assert (scaled - default).abs().max() > 1e-3, "sm_scale had no effect"


# ---------------------------------------------------------------- bfloat16


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="CPU tensors need the interpreter, off when CUDA is present"
)
def test_bfloat16_on_cpu_is_refused():
    q, k, v = make_qkv(1, 16, 1, 16, torch.bfloat16, "cpu", seed=22)
    zeros = torch.zeros(1, 16, 1, dtype=torch.int64)
    with pytest.raises(TypeError, match="bfloat16"):
        scfa_kernels.hash_sparse_attention(q, k, v, zeros, zeros)
    with pytest.raises(TypeError, match="bfloat16"):
        scfa_kernels.qk_sparse_attention(q, k, v, zeros.bool(), zeros.bool())


@needs_cuda
@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_bfloat16_forward_on_cuda(kind):
    b, t, h, d = 2, 256, 2, 64
    q, k, v = make_qkv(b, t, h, d, torch.bfloat16, "cuda", seed=23)
    pattern = (
        random_hash(b, t, h, 4, "cuda", seed=23)
        if kind == "hash"
        else random_keep(b, t, h, 0.5, "cuda", seed=23)
    )
    check_forward(pattern, q, k, v)

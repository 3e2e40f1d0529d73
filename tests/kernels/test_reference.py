"""The dense reference (scfa_kernels.reference) against brute force and autograd.

Everything here is plain torch on the CPU in float64: the reference is the truth the kernel
tests rely on, so it is itself checked against independent, obviously-correct computations.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scfa_kernels import reference as ref


def _rand_qkv(b: int, t: int, h: int, d: int, seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, t, h, d, generator=gen, dtype=dtype) for _ in range(3))


def _rand_hash(b: int, t: int, h: int, n_buckets: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, n_buckets, (b, t, h), generator=gen) for _ in range(2))


def _rand_keep(b: int, t: int, h: int, p_keep: float, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(b, t, h, generator=gen) < p_keep for _ in range(2))


def _brute_force_attention(q, k, v, allowed, scale):
    """Row by row with python loops over keys: out[b,t,h] = sum_s softmax_s * v[b,s,h]."""
    b_n, t_n, h_n, _ = q.shape
    out = torch.zeros_like(q)
    for b in range(b_n):
        for h in range(h_n):
            for t in range(t_n):
                keys = [s for s in range(t_n) if allowed(b, h, t, s)]
                if not keys:
                    continue
                logits = [float(q[b, t, h] @ k[b, s, h]) * scale for s in keys]
                top = max(logits)
                weights = [math.exp(x - top) for x in logits]
                total = sum(weights)
                for w, s in zip(weights, keys, strict=True):
                    out[b, t, h] += (w / total) * v[b, s, h]
    return out


# ---------------------------------------------------------------- masks


def test_hash_mask_matches_python_loop():
    b_n, t_n, h_n = 2, 9, 3
    q_hash, k_hash = _rand_hash(b_n, t_n, h_n, 3, seed=1)
    mask = ref.hash_mask(q_hash, k_hash)
    assert mask.shape == (b_n, h_n, t_n, t_n) and mask.dtype == torch.bool
    for b in range(b_n):
        for h in range(h_n):
            for t in range(t_n):
                for s in range(t_n):
                    want = s <= t and int(q_hash[b, t, h]) == int(k_hash[b, s, h])
                    assert bool(mask[b, h, t, s]) == want, (b, h, t, s)


def test_qk_mask_matches_python_loop():
    b_n, t_n, h_n = 2, 9, 3
    q_keep, k_keep = _rand_keep(b_n, t_n, h_n, 0.6, seed=2)
    mask = ref.qk_mask(q_keep, k_keep)
    assert mask.shape == (b_n, h_n, t_n, t_n) and mask.dtype == torch.bool
    for b in range(b_n):
        for h in range(h_n):
            for t in range(t_n):
                for s in range(t_n):
                    want = s <= t and bool(q_keep[b, t, h]) and bool(k_keep[b, s, h])
                    assert bool(mask[b, h, t, s]) == want, (b, h, t, s)


@pytest.mark.parametrize("mask_fn", ["hash", "qk"])
def test_mask_rows_subset_is_slice_of_full_mask(mask_fn):
    b_n, t_n, h_n = 2, 17, 2
    if mask_fn == "hash":
        a, c = _rand_hash(b_n, t_n, h_n, 4, seed=3)
        build = ref.hash_mask
    else:
        a, c = _rand_keep(b_n, t_n, h_n, 0.5, seed=3)
        build = ref.qk_mask
    rows = torch.tensor([16, 0, 5, 5, 11])
    assert torch.equal(build(a, c, rows), build(a, c)[:, :, rows])


# ---------------------------------------------------------------- forward


def test_hash_forward_matches_brute_force():
    q, k, v = _rand_qkv(2, 8, 2, 4, seed=4)
    q_hash, k_hash = _rand_hash(2, 8, 2, 3, seed=5)
    scale = 0.7
    out = ref.hash_sparse_attention(q, k, v, q_hash, k_hash, sm_scale=scale)

    def allowed(b, h, t, s):
        return s <= t and int(q_hash[b, t, h]) == int(k_hash[b, s, h])

    want = _brute_force_attention(q, k, v, allowed, scale)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_qk_forward_matches_brute_force():
    q, k, v = _rand_qkv(2, 8, 2, 4, seed=6)
    q_keep, k_keep = _rand_keep(2, 8, 2, 0.6, seed=7)
    out = ref.qk_sparse_attention(q, k, v, q_keep, k_keep)

    def allowed(b, h, t, s):
        return s <= t and bool(q_keep[b, t, h]) and bool(k_keep[b, s, h])

    want = _brute_force_attention(q, k, v, allowed, 1 / math.sqrt(4))
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_one_bucket_equals_sdpa_causal():
    q, k, v = _rand_qkv(2, 13, 3, 8, seed=8)
    zeros = torch.zeros(2, 13, 3, dtype=torch.int64)
    out = ref.hash_sparse_attention(q, k, v, zeros, zeros)
    want = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
    ).transpose(1, 2)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)


def test_all_kept_equals_sdpa_causal_with_scale():
    q, k, v = _rand_qkv(1, 11, 2, 16, seed=9)
    keep = torch.ones(1, 11, 2, dtype=torch.bool)
    out = ref.qk_sparse_attention(q, k, v, keep, keep, sm_scale=0.3)
    want = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=0.3
    ).transpose(1, 2)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)


def test_default_scale_is_inverse_sqrt_head_dim():
    q, k, v = _rand_qkv(1, 6, 1, 9, seed=10)
    hashes = torch.zeros(1, 6, 1, dtype=torch.int32)
    default = ref.hash_sparse_attention(q, k, v, hashes, hashes)
    explicit = ref.hash_sparse_attention(q, k, v, hashes, hashes, sm_scale=1 / 3)
    other = ref.hash_sparse_attention(q, k, v, hashes, hashes, sm_scale=1.0)
    torch.testing.assert_close(default, explicit, rtol=0, atol=0)
    assert not torch.allclose(default, other)


@pytest.mark.parametrize("pattern", ["hash", "qk"])
def test_rows_subset_equals_slice_of_full_output(pattern):
    q, k, v = _rand_qkv(2, 21, 2, 8, seed=11)
    if pattern == "hash":
        a, c = _rand_hash(2, 21, 2, 3, seed=12)
        fn = ref.hash_sparse_attention
    else:
        a, c = _rand_keep(2, 21, 2, 0.5, seed=12)
        fn = ref.qk_sparse_attention
    rows = torch.tensor([20, 3, 0, 14])
    full = fn(q, k, v, a, c)
    part = fn(q, k, v, a, c, rows=rows)
    assert part.shape == (2, 4, 2, 8)
    torch.testing.assert_close(part, full[:, rows], rtol=1e-13, atol=1e-14)


def test_output_dtype_float32_for_low_precision_and_float64_kept():
    q, k, v = _rand_qkv(1, 5, 1, 4, seed=13, dtype=torch.float16)
    hashes = torch.zeros(1, 5, 1, dtype=torch.int64)
    assert ref.hash_sparse_attention(q, k, v, hashes, hashes).dtype == torch.float32
    q64, k64, v64 = _rand_qkv(1, 5, 1, 4, seed=13)
    assert ref.hash_sparse_attention(q64, k64, v64, hashes, hashes).dtype == torch.float64


# ---------------------------------------------------------------- stranded rows


def test_stranded_queries_output_zero_and_get_zero_gradient():
    b_n, t_n, h_n, d = 1, 10, 2, 4
    q, k, v = (x.requires_grad_() for x in _rand_qkv(b_n, t_n, h_n, d, seed=14))
    q_hash = torch.zeros(b_n, t_n, h_n, dtype=torch.int64)
    k_hash = torch.zeros(b_n, t_n, h_n, dtype=torch.int64)
    # Head 0: queries 3 and 7 are in bucket 5, which no key holds. Head 1: every query stranded.
    q_hash[0, [3, 7], 0] = 5
    k_hash[0, :, 1] = 1
    out = ref.hash_sparse_attention(q, k, v, q_hash, k_hash)
    out.backward(torch.randn_like(out))
    assert torch.isfinite(out).all()
    for g in (q.grad, k.grad, v.grad):
        assert torch.isfinite(g).all()
    assert torch.count_nonzero(out[0, [3, 7], 0]) == 0
    assert torch.count_nonzero(out[0, :, 1]) == 0
    assert torch.count_nonzero(q.grad[0, [3, 7], 0]) == 0
    # Head 1 has no allowed pair at all: no gradient reaches any of its q, k or v.
    for g in (q.grad, k.grad, v.grad):
        assert torch.count_nonzero(g[0, :, 1]) == 0
    # The other rows of head 0 are untouched by the stranded ones: not zero.
    assert torch.count_nonzero(out[0, [0, 1, 2], 0]) > 0


def test_nothing_kept_gives_zero_output_and_chunked_zero_grads():
    q, k, v = _rand_qkv(1, 7, 2, 4, seed=15)
    none = torch.zeros(1, 7, 2, dtype=torch.bool)
    out = ref.qk_sparse_attention(q, k, v, none, none)
    assert torch.count_nonzero(out) == 0
    grads = ref.qk_sparse_attention_grads(q, k, v, none, none, torch.randn_like(q), chunk=3)
    for g in grads:
        assert torch.isfinite(g).all() and torch.count_nonzero(g) == 0


# ---------------------------------------------------------------- chunked exact gradients


def _autograd_grads(q, k, v, do, mask, scale):
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    out = ref.masked_attention(leaves[0], leaves[1], leaves[2], mask, scale)
    out.backward(do)
    return tuple(x.grad for x in leaves)


@pytest.mark.parametrize("chunk", [1, 4, 19, 512])
@pytest.mark.parametrize("pattern", ["hash", "qk"])
def test_chunked_grads_match_autograd(pattern, chunk):
    b_n, t_n, h_n, d = 2, 19, 3, 8
    q, k, v = _rand_qkv(b_n, t_n, h_n, d, seed=16)
    do = torch.randn(
        b_n, t_n, h_n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(17)
    )
    scale = 0.4
    if pattern == "hash":
        a, c = _rand_hash(b_n, t_n, h_n, 3, seed=18)
        a[0, 5] = 99  # a stranded query among the others
        mask = ref.hash_mask(a, c)
        got = ref.hash_sparse_attention_grads(q, k, v, a, c, do, sm_scale=scale, chunk=chunk)
    else:
        a, c = _rand_keep(b_n, t_n, h_n, 0.6, seed=18)
        mask = ref.qk_mask(a, c)
        got = ref.qk_sparse_attention_grads(q, k, v, a, c, do, sm_scale=scale, chunk=chunk)
    want = _autograd_grads(q, k, v, do, mask, scale)
    for name, g, w in zip(("dq", "dk", "dv"), got, want, strict=True):
        assert g.dtype == torch.float64, name
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=name)


def test_chunked_grads_asks_mask_for_at_most_chunk_rows():
    b_n, t_n, h_n, d = 1, 23, 1, 4
    q, k, v = _rand_qkv(b_n, t_n, h_n, d, seed=19)
    q_hash, k_hash = _rand_hash(b_n, t_n, h_n, 2, seed=20)
    asked: list[list[int]] = []

    def mask_fn(rows):
        asked.append(rows.tolist())
        return ref.hash_mask(q_hash, k_hash, rows)

    ref.masked_attention_grads(q, k, v, torch.ones_like(q), mask_fn, chunk=5)
    assert all(len(r) <= 5 for r in asked)
    assert sorted(x for r in asked for x in r) == list(range(t_n))


def test_chunked_grads_float32_for_half_inputs():
    q, k, v = _rand_qkv(1, 9, 1, 4, seed=21, dtype=torch.float16)
    keep = torch.ones(1, 9, 1, dtype=torch.bool)
    grads = ref.qk_sparse_attention_grads(q, k, v, keep, keep, torch.ones_like(q), chunk=4)
    assert all(g.dtype == torch.float32 for g in grads)
    want = _autograd_grads(
        q.float(), k.float(), v.float(), torch.ones(1, 9, 1, 4), ref.qk_mask(keep, keep), None
    )
    for g, w in zip(grads, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_name_the_argument():
    q, k, v = _rand_qkv(1, 4, 1, 4, seed=22)
    hashes = torch.zeros(1, 4, 1, dtype=torch.int64)
    with pytest.raises(TypeError, match="q_hash"):
        ref.hash_mask(hashes.float(), hashes)
    with pytest.raises(ValueError, match="k_hash"):
        ref.hash_mask(hashes, torch.zeros(1, 5, 1, dtype=torch.int64))
    with pytest.raises(TypeError, match="k_keep"):
        ref.qk_mask(hashes.bool(), hashes)
    with pytest.raises(ValueError, match="rows"):
        ref.hash_mask(hashes, hashes, rows=torch.tensor([4]))
    with pytest.raises(ValueError, match="sm_scale"):
        ref.hash_sparse_attention(q, k, v, hashes, hashes, sm_scale=0.0)
    with pytest.raises(ValueError, match="sm_scale"):
        ref.hash_sparse_attention(q, k, v, hashes, hashes, sm_scale=float("nan"))
    with pytest.raises(ValueError, match="mask"):
        ref.masked_attention(q, k, v, torch.ones(1, 1, 4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="q shape"):
        ref.hash_sparse_attention(q[:, :, :, :2], k, v, hashes, hashes)

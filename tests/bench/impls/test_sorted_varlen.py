"""sorted_varlen: the sort / segment / unsort logic, with a dense per-segment stand-in for
torch's varlen kernel (CUDA only), against the hash-sparse reference on shared buckets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scfa_bench.impls import sorted_varlen as sv
from scfa_bench.impls.base import AttentionInputs, ImplUnavailable
from scfa_bench.measure.inputs import make_inputs
from scfa_bench.suite.grid import Point
from scfa_bench.suite.schema import Shape
from scfa_kernels import reference


def dense_segments(q, k, v, cu_seqlens, max_len):
    """Causal softmax attention inside each packed segment, float32 (the varlen stand-in)."""
    assert max_len == int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    outs = []
    bounds = cu_seqlens.tolist()
    for start, end in itertools.pairwise(bounds):
        assert end > start, "empty segments must have been dropped"
        qs, ks, vs = (x[start:end, 0].float() for x in (q, k, v))
        scores = qs @ ks.T / math.sqrt(q.shape[-1])
        causal = torch.ones(end - start, end - start, dtype=torch.bool).tril()
        probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        outs.append((probs @ vs)[:, None])
    return torch.cat(outs).to(q.dtype)


@pytest.mark.parametrize(("t", "n_buckets"), [(1, 2), (17, 3), (64, 8), (96, 1)])
def test_segments_sort_every_row_by_bucket_then_position(t, n_buckets):
    gen = torch.Generator().manual_seed(t)
    bucket = torch.randint(0, n_buckets, (2, 3, t), generator=gen)
    seg = sv.segments(bucket, n_buckets)
    assert torch.equal(seg.perm.sort(-1).values, torch.arange(t).expand(2, 3, t))
    sorted_bucket = bucket.gather(-1, seg.perm)
    key = sorted_bucket * t + seg.perm
    assert torch.all(key[..., 1:] > key[..., :-1])
    lengths = (seg.cu_seqlens[1:] - seg.cu_seqlens[:-1]).tolist()
    expected = [
        int((bucket[b, h] == nb).sum())
        for b in range(2)
        for h in range(3)
        for nb in range(n_buckets)
        if (bucket[b, h] == nb).any()
    ]
    assert lengths == expected and seg.max_len == max(expected)
    assert seg.cu_seqlens.dtype == torch.int32 and int(seg.cu_seqlens[-1]) == 2 * 3 * t


@pytest.mark.parametrize(("t", "n_buckets"), [(33, 4), (64, 2), (50, 16)])
def test_sorted_segment_attention_equals_hash_sparse_attention_on_shared_buckets(t, n_buckets):
    gen = torch.Generator().manual_seed(100 + t)
    b, h, d = 2, 2, 16
    q, k, v = (torch.randn((b, t, h, d), generator=gen, requires_grad=True) for _ in range(3))
    bucket = torch.randint(0, n_buckets, (b, t, h), generator=gen, dtype=torch.int32)
    out = sv.sorted_segment_attention(q, k, v, bucket, n_buckets, dense_segments)
    expected = reference.hash_sparse_attention(q, k, v, bucket, bucket)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)

    do = torch.randn(out.shape, generator=gen)
    got = torch.autograd.grad(out, (q, k, v), do)
    want = torch.autograd.grad(expected, (q, k, v), do)
    for name, g, w in zip("qkv", got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5, msg=f"d{name}")


def _inputs(shared: bool, dtype=torch.float16) -> AttentionInputs:
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn((1, 16, 2, 16), generator=gen).to(dtype) for _ in range(3))
    q_hash = torch.randint(0, 4, (1, 16, 2), generator=gen, dtype=torch.int32)
    k_hash = q_hash if shared else (q_hash + 1) % 4
    return AttentionInputs(q=q, k=k, v=v, q_hash=q_hash, k_hash=k_hash)


def test_prepare_refuses_buckets_that_are_not_shared():
    with pytest.raises(ImplUnavailable, match=r"shared buckets.*lsh_shared"):
        sv.SortedVarlen().prepare(_inputs(shared=False))


def test_prepare_refuses_float32():
    with pytest.raises(ImplUnavailable, match="fp16/bf16"):
        sv.SortedVarlen().prepare(_inputs(shared=True, dtype=torch.float32))


def test_unavailable_on_the_cpu():
    ok, reason = sv.SortedVarlen().available("cpu")
    assert not ok and "CUDA" in reason


def test_lsh_shared_inputs_hash_keys_as_their_queries():
    shape = Shape(batch=1, heads=2, head_dim=16, dtype="fp32")
    inputs = make_inputs(shape, Point(64, n_buckets=4), seed=0, device="cpu", buckets="lsh_shared")
    assert torch.equal(inputs.q_hash, inputs.k_hash)
    assert inputs.q_hash.min() >= 0 and inputs.q_hash.max() < 4
    assert len(inputs.q_hash.unique()) > 1

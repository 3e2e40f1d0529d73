"""Backward of the Triton kernels: dq, dk, dv through autograd against the exact reference.

The upstream gradient is random; the reference gradients come from the chunked explicit
formulas in scfa_kernels.reference, computed in float32 from the same rounded inputs.
Stranded queries must get exactly zero dq; nothing may be NaN.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scfa_kernels.testing import (
    TOLERANCES,
    SparsityMask,
    assert_matches,
    check_backward,
    generator,
    make_qkv,
    random_hash,
    random_keep,
)

# On a CPU every case runs the kernels through Triton's interpreter: seconds each.
pytestmark = pytest.mark.slow

DTYPES = [torch.float16, torch.float32]
DTYPE_IDS = ["fp16", "fp32"]


def _pattern(kind: str, b: int, t: int, h: int, sparsity, device: str, seed: int) -> SparsityMask:
    if kind == "hash":
        return random_hash(b, t, h, sparsity, device, seed)
    return random_keep(b, t, h, sparsity, device, seed)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    ("kind", "b", "t", "h", "d", "sparsity"),
    [
        ("hash", 1, 64, 2, 16, 2),
        ("hash", 2, 100, 1, 32, 3),
        ("hash", 1, 160, 1, 64, 8),
        ("qk", 1, 64, 2, 16, 0.5),
        ("qk", 2, 100, 1, 32, 0.2),
        ("qk", 1, 160, 1, 64, 0.7),
    ],
)
def test_backward_random(device, dtype, kind, b, t, h, d, sparsity):
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=t + d)
    check_backward(_pattern(kind, b, t, h, sparsity, device, seed=t), q, k, v, seed=d)


@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_backward_head_dim_128(device, kind):
    q, k, v = make_qkv(1, 48, 1, 128, torch.float32, device, seed=3)
    check_backward(_pattern(kind, 1, 48, 1, 2 if kind == "hash" else 0.3, device, 3), q, k, v)


@pytest.mark.parametrize("t", [1, 7, 65, 130])
@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_backward_seq_len_not_multiple_of_block(device, kind, t):
    q, k, v = make_qkv(1, t, 2, 16, torch.float32, device, seed=t)
    check_backward(_pattern(kind, 1, t, 2, 3 if kind == "hash" else 0.4, device, t), q, k, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_backward_one_bucket_equals_dense_causal(device, dtype):
    b, t, h, d = 1, 90, 2, 32
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=4)
    zeros = torch.zeros(b, t, h, dtype=torch.int64, device=device)
    grads = check_backward(SparsityMask("hash", zeros, zeros), q, k, v, seed=4)
    # torch's dense causal attention, float32, same upstream gradient.
    leaves = [x.detach().float().transpose(1, 2).requires_grad_() for x in (q, k, v)]
    out = F.scaled_dot_product_attention(*leaves, is_causal=True).transpose(1, 2)
    do = torch.randn(out.shape, generator=generator(4)).to(dtype=dtype, device=device)
    out.backward(do.float())
    for name, g, leaf in zip(("dq", "dk", "dv"), grads, leaves, strict=True):
        want = leaf.grad.transpose(1, 2)
        assert_matches(g.float().cpu(), want.cpu(), TOLERANCES[dtype].grad, name)


def test_backward_all_kept_matches_reference(device):
    b, t, h, d = 2, 80, 1, 16
    q, k, v = make_qkv(b, t, h, d, torch.float16, device, seed=5)
    keep = torch.ones(b, t, h, dtype=torch.bool, device=device)
    check_backward(SparsityMask("qk", keep, keep), q, k, v, seed=5)


def _zero_grads_everywhere(pattern: SparsityMask, q, k, v) -> None:
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    out = pattern.kernel(*leaves)
    out.backward(torch.randn(out.shape, generator=generator(6)).to(q.dtype).to(q.device))
    assert torch.count_nonzero(out) == 0
    for name, leaf in zip(("dq", "dk", "dv"), leaves, strict=True):
        assert leaf.grad is not None, name
        assert not torch.isnan(leaf.grad).any(), f"{name} has NaN"
        assert torch.count_nonzero(leaf.grad) == 0, f"{name} must be 0 when no pair is allowed"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_backward_every_query_stranded(device, dtype):
    q, k, v = make_qkv(1, 70, 2, 16, dtype, device, seed=6)
    q_hash = torch.zeros(1, 70, 2, dtype=torch.int64, device=device)
    _zero_grads_everywhere(SparsityMask("hash", q_hash, q_hash + 1), q, k, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_backward_nothing_kept(device, dtype):
    q, k, v = make_qkv(1, 70, 2, 16, dtype, device, seed=7)
    none = torch.zeros(1, 70, 2, dtype=torch.bool, device=device)
    _zero_grads_everywhere(SparsityMask("qk", none, none), q, k, v)


def test_backward_heads_with_different_drop_rates(device):
    q, k, v = make_qkv(1, 96, 4, 16, torch.float32, device, seed=8)
    pattern = random_keep(1, 96, 4, [0.0, 0.3, 0.9, 1.0], device, seed=8)
    dq, dk, dv = check_backward(pattern, q, k, v, seed=8)
    for g in (dq, dk, dv):
        assert torch.count_nonzero(g[:, :, 3]) == 0  # the head that keeps nothing


def test_backward_non_contiguous_inputs(device):
    b, t, h, d = 2, 50, 2, 32
    q, k, v = (
        x.transpose(1, 2).contiguous().transpose(1, 2)
        for x in make_qkv(b, t, h, d, torch.float32, device, seed=9)
    )
    assert not q.is_contiguous()
    check_backward(random_hash(b, t, h, 2, device, seed=9), q, k, v, seed=9)


def test_backward_bucket_ids_with_gaps_and_large_values(device):
    q, k, v = make_qkv(1, 90, 2, 16, torch.float32, device, seed=10)
    base = random_hash(1, 90, 2, 2, device, seed=10)
    as_ids = lambda x: torch.where(x == 0, 3, 1000)
    check_backward(SparsityMask("hash", as_ids(base.a), as_ids(base.c)), q, k, v, seed=10)


def test_backward_batches_with_different_patterns(device):
    b, t, h, d = 3, 64, 1, 16
    q, k, v = make_qkv(b, t, h, d, torch.float32, device, seed=11)
    q_keep = torch.ones(b, t, h, dtype=torch.bool)
    k_keep = torch.ones(b, t, h, dtype=torch.bool)
    gen = generator(11)
    q_keep[1] = torch.rand(t, h, generator=gen) > 0.5
    k_keep[1] = torch.rand(t, h, generator=gen) > 0.5
    k_keep[2] = False
    dq, dk, dv = check_backward(SparsityMask("qk", q_keep.to(device), k_keep.to(device)), q, k, v)
    for g in (dq, dk, dv):
        assert torch.count_nonzero(g[2]) == 0 and torch.count_nonzero(g[0]) > 0


@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_backward_sm_scale_given(device, kind):
    q, k, v = make_qkv(1, 72, 2, 32, torch.float32, device, seed=12)
    pattern = _pattern(kind, 1, 72, 2, 2 if kind == "hash" else 0.3, device, 12)
    check_backward(pattern, q, k, v, sm_scale=0.25)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="bfloat16 kernels need CUDA (tl.dot on bf16 is wrong in the interpreter)",
)
@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_bfloat16_backward_on_cuda(kind):
    b, t, h, d = 2, 256, 2, 64
    q, k, v = make_qkv(b, t, h, d, torch.bfloat16, "cuda", seed=13)
    check_backward(_pattern(kind, b, t, h, 4 if kind == "hash" else 0.5, "cuda", 13), q, k, v)

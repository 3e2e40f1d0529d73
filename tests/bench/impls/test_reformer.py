"""reformer_lsh: checked against the dense masked reference of exactly what it computes."""

from __future__ import annotations

import pytest
import torch

from scfa_bench.impls import reformer as rf
from scfa_bench.impls.base import AttentionInputs
from scfa_bench.measure.correctness import check_against_reference, mask_fn_for, sample_rows
from scfa_kernels import reference


def _data(b, t, h, d, nb, rounds, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn((b, t, h, d), generator=gen, dtype=dtype) for _ in range(3))
    hashes = lambda: [
        torch.randint(0, nb, (b, t, h), generator=gen, dtype=torch.int32) for _ in range(rounds)
    ]
    return q, k, v, hashes(), hashes()


def _brute_force_mask(q_hashes, k_hashes, chunk, same_bucket):
    """allowed[b, h, t, s] by the definition, one pair at a time."""
    b, t, h = q_hashes[0].shape
    mask = torch.zeros((b, h, t, t), dtype=torch.bool)
    for qh, kh in zip(q_hashes, k_hashes, strict=True):
        for bi in range(b):
            for hi in range(h):
                q_order = sorted(range(t), key=lambda i: (int(qh[bi, i, hi]), i))
                k_order = sorted(range(t), key=lambda i: (int(kh[bi, i, hi]), i))
                q_chunk = {pos: slot // chunk for slot, pos in enumerate(q_order)}
                k_chunk = {pos: slot // chunk for slot, pos in enumerate(k_order)}
                for i in range(t):
                    for j in range(i + 1):
                        near = q_chunk[i] - k_chunk[j] in (0, 1)
                        same = not same_bucket or int(qh[bi, i, hi]) == int(kh[bi, j, hi])
                        mask[bi, hi, i, j] |= near and same
    return mask


@pytest.mark.parametrize(("t", "chunk", "rounds"), [(20, 4, 1), (23, 8, 2), (16, 16, 1)])
@pytest.mark.parametrize("same_bucket", [True, False])
def test_reformer_mask_follows_its_definition(t, chunk, rounds, same_bucket):
    _, _, _, qh, kh = _data(2, t, 2, 4, 3, rounds, seed=t + rounds)
    got = rf.reformer_mask(qh, kh, chunk, same_bucket=same_bucket)
    assert torch.equal(got, _brute_force_mask(qh, kh, chunk, same_bucket))
    rows = torch.tensor([0, 5, t - 1])
    assert torch.equal(
        rf.reformer_mask(qh, kh, chunk, rows, same_bucket=same_bucket), got[:, :, rows]
    )


@pytest.mark.parametrize(
    ("t", "nb", "chunk", "rounds"),
    [(64, 4, 8, 1), (61, 4, 8, 1), (50, 2, 16, 3), (40, 8, 4, 2), (7, 2, 4, 1), (96, 1, 32, 1)],
)
@pytest.mark.parametrize("same_bucket", [True, False])
def test_reformer_attention_equals_its_dense_reference(t, nb, chunk, rounds, same_bucket):
    q, k, v, qh, kh = _data(2, t, 2, 16, nb, rounds, seed=10 * t + rounds)
    for x in (q, k, v):
        x.requires_grad_(True)
    out = rf.reformer_lsh_attention(q, k, v, qh, kh, chunk, same_bucket=same_bucket)
    mask = rf.reformer_mask(qh, kh, chunk, same_bucket=same_bucket)
    expected = reference.masked_attention(q, k, v, mask)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)

    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(out, (q, k, v), do)
    want = torch.autograd.grad(expected, (q, k, v), do)
    for name, g, w in zip("qkv", got, want, strict=True):
        torch.testing.assert_close(g, w, atol=3e-5, rtol=3e-5, msg=f"d{name}")


def test_one_chunk_covering_everything_is_exact_hash_attention():
    q, k, v, qh, kh = _data(1, 32, 2, 16, 4, 1, seed=5)
    out = rf.reformer_lsh_attention(q, k, v, qh, kh, chunk=32)
    assert rf.relative_error_vs_exact(q, k, v, qh[0], kh[0], out) < 1e-5


def test_small_chunks_differ_from_exact_hash_attention():
    q, k, v, qh, kh = _data(1, 128, 2, 16, 2, 1, seed=6)
    out = rf.reformer_lsh_attention(q, k, v, qh, kh, chunk=8)
    assert rf.relative_error_vs_exact(q, k, v, qh[0], kh[0], out) > 1e-2


def test_bad_arguments_are_named():
    q, k, v, qh, kh = _data(1, 8, 1, 16, 2, 1, seed=7)
    with pytest.raises(ValueError, match="chunk"):
        rf.reformer_lsh_attention(q, k, v, qh, kh, chunk=0)
    with pytest.raises(ValueError, match="rounds"):
        rf.reformer_lsh_attention(q, k, v, qh, kh + kh, chunk=4)


@pytest.mark.parametrize("impl_class", [rf.ReformerLsh, rf.ReformerLshR4])
def test_registered_implementation_passes_the_check_against_its_own_reference(impl_class):
    q, k, v, qh, kh = _data(1, 256, 2, 16, 2, 1, seed=8, dtype=torch.float16)
    for x in (q, k, v):
        x.requires_grad_(True)
    inputs = AttentionInputs(q=q, k=k, v=v, q_hash=qh[0], k_hash=kh[0])
    impl = impl_class()
    assert impl.kind == "approximate"
    effective = impl.effective_inputs(inputs)
    assert mask_fn_for(effective) is effective.reference_mask
    forward = impl.prepare(effective)
    result = check_against_reference(
        forward,
        effective,
        dtype="fp16",
        rows=sample_rows(256, 256, seed=0),
        with_grads=True,
        seed=0,
    )
    assert result.passed, result.detail
    # Against the exact pattern it is approximate: the same call fails the sparse check.
    exact = check_against_reference(
        forward, inputs, dtype="fp16", rows=sample_rows(256, 256, seed=0), with_grads=False, seed=0
    )
    assert not exact.passed

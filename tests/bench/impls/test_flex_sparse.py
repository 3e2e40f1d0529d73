"""FlexAttention baselines: the O(T log T) BlockMask construction, checked on the CPU.

FlexAttention's compiled kernels need a GPU; its eager CPU path (forward only) runs the
sorted-order construction end to end against the dense reference at tiny shapes.
"""

from __future__ import annotations

import pytest
import torch

from scfa_bench.impls import flex_ranges as fr
from scfa_bench.impls import flex_sparse as fs
from scfa_kernels import reference


def _sorted_dense_mask(q_bucket, k_bucket):
    """allowed[b, h, i, j] in sorted slots: same bucket and key position <= query position."""
    queries, keys = fr.sort_rows(q_bucket), fr.sort_rows(k_bucket)
    t = q_bucket.shape[-1]
    qb, kb = queries.composite // t, keys.composite // t
    same = qb[..., :, None] == kb[..., None, :]
    causal = keys.perm[..., None, :] <= queries.perm[..., :, None]
    return queries, keys, same & causal


def _block_sets(ranges, b, h, i):
    partial = ranges.kv_indices[b, h, i, : ranges.kv_num_blocks[b, h, i]].tolist()
    full = ranges.full_kv_indices[b, h, i, : ranges.full_kv_num_blocks[b, h, i]].tolist()
    return partial, full


@pytest.mark.parametrize(
    ("t", "n_buckets", "block"),
    [(64, 4, 8), (61, 3, 8), (40, 1, 16), (33, 8, 4), (16, 2, 16), (7, 2, 4)],
)
@pytest.mark.parametrize("shared", [True, False])
def test_block_ranges_cover_every_allowed_pair_and_full_blocks_are_full(
    t, n_buckets, block, shared
):
    gen = torch.Generator().manual_seed(t * 31 + n_buckets)
    q_bucket = torch.randint(0, n_buckets, (2, 3, t), generator=gen)
    k_bucket = q_bucket if shared else torch.randint(0, n_buckets, (2, 3, t), generator=gen)
    queries, keys, allowed = _sorted_dense_mask(q_bucket, k_bucket)
    ranges = fr.block_ranges(queries, keys, block)
    n_blocks = -(-t // block)
    for b in range(2):
        for h in range(3):
            for i in range(n_blocks):
                partial, full = _block_sets(ranges, b, h, i)
                assert not set(partial) & set(full), "a block listed as partial and full"
                assert len(set(partial)) == len(partial) and len(set(full)) == len(full)
                rows = slice(i * block, min((i + 1) * block, t))
                for j in range(n_blocks):
                    tile = allowed[b, h, rows, j * block : min((j + 1) * block, t)]
                    if tile.any():
                        assert j in partial or j in full, (b, h, i, j)
                    if j in full:
                        assert tile.all() and tile.shape[1] == block, (b, h, i, j)


def test_block_ranges_of_a_single_bucket_are_causal_blocks():
    t, block = 64, 16
    bucket = torch.zeros((1, 1, t), dtype=torch.int64)
    queries = keys = fr.sort_rows(bucket)
    ranges = fr.block_ranges(queries, keys, block)
    for i in range(t // block):
        partial, full = _block_sets(ranges, 0, 0, i)
        assert partial == [i]  # the diagonal block
        assert full == list(range(i))


def test_qk_buckets_never_match_dropped_rows():
    q_keep = torch.tensor([[[True, False, True]]])
    k_keep = torch.tensor([[[False, True, True]]])
    qb, kb = fr.qk_buckets(q_keep, k_keep)
    assert qb.tolist() == [[[0, 1, 0]]] and kb.tolist() == [[[2, 0, 0]]]


def _eager_flex(q, k, v, block_mask):
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention(q, k, v, block_mask=block_mask)


@pytest.mark.parametrize(
    ("shared", "nb", "block", "t"),
    [(True, 4, 128, 256), (False, 4, 128, 256), (True, 2, 32, 256), (False, 2, 128, 200)],
)
def test_sorted_flex_attention_matches_the_hash_reference(shared, nb, block, t):
    b, h, d = 1, 2, 16
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn((b, t, h, d), generator=gen) for _ in range(3))
    q_hash = torch.randint(0, nb, (b, t, h), generator=gen, dtype=torch.int32)
    k_hash = q_hash if shared else torch.randint(0, nb, (b, t, h), generator=gen, dtype=torch.int32)
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    out = fr.sorted_flex_attention(
        qt, kt, vt, q_hash.transpose(1, 2), k_hash.transpose(1, 2), _eager_flex, block=block
    ).transpose(1, 2)
    expected = reference.hash_sparse_attention(q, k, v, q_hash, k_hash)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)


def test_sorted_flex_attention_matches_the_qk_reference():
    b, t, h, d = 1, 256, 2, 16
    gen = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn((b, t, h, d), generator=gen) for _ in range(3))
    q_keep, k_keep = (torch.rand((b, t, h), generator=gen) > 0.5 for _ in range(2))
    qb, kb = fr.qk_buckets(q_keep.transpose(1, 2), k_keep.transpose(1, 2))
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    out = fr.sorted_flex_attention(qt, kt, vt, qb, kb, _eager_flex).transpose(1, 2)
    expected = reference.qk_sparse_attention(q, k, v, q_keep, k_keep)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)


def test_mask_mods_match_the_reference_masks():
    b, t, h = 2, 12, 3
    gen = torch.Generator().manual_seed(9)
    q_hash, k_hash = (torch.randint(0, 3, (b, t, h), generator=gen) for _ in range(2))
    q_keep, k_keep = (torch.rand((b, t, h), generator=gen) > 0.4 for _ in range(2))
    bi, hi, qi, ki = torch.meshgrid(
        torch.arange(b), torch.arange(h), torch.arange(t), torch.arange(t), indexing="ij"
    )
    bht = lambda x: x.transpose(1, 2).contiguous()
    got_hash = fs.hash_mask_mod(bht(q_hash), bht(k_hash))(bi, hi, qi, ki)
    got_qk = fs.qk_mask_mod(bht(q_keep), bht(k_keep))(bi, hi, qi, ki)
    assert torch.equal(got_hash, reference.hash_mask(q_hash, k_hash))
    assert torch.equal(got_qk, reference.qk_mask(q_keep, k_keep))


def test_flex_sparse_is_unavailable_on_the_cpu():
    from scfa_bench.impls.registry import get_spec

    for name in ("flex_hash", "flex_qk_prebuilt", "flex_hash_ranges", "flex_qk_ranges"):
        ok, reason = get_spec(name).create().available("cpu")
        assert not ok and "CUDA" in reason

"""The plan kernels (counting sort, tile ranges) against their torch reference versions."""

from __future__ import annotations

import pytest
import torch

from scfa_kernels import plan as P

# On a CPU every case runs the kernels through Triton's interpreter: seconds each.
pytestmark = pytest.mark.slow


def _random_hash(B: int, T: int, H: int, n_buckets: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_buckets, (B, T, H), generator=g)


# tl.sort is slow under the interpreter: the sort-ranked path gets a few small cases.
SORT_CASES = [(T, nb, False) for T in (1, 5, 127, 128, 129, 300, 1100) for nb in (1, 2, 7, 64)]
SORT_CASES += [(1, 64, True), (33, 9, True), (100, 64, True), (130, 2, True)]


@pytest.mark.parametrize(("T", "n_buckets", "rank_by_sort"), SORT_CASES)
def test_counting_sort_matches_stable_torch_sort(
    device: str, T: int, n_buckets: int, rank_by_sort: bool
) -> None:
    q_buckets = _random_hash(2, T, 3, n_buckets, seed=T * 100 + n_buckets).to(device)
    k_buckets = _random_hash(2, T, 3, n_buckets, seed=T * 100 + n_buckets + 1).to(device)
    counted = P._sort_rows_pair_counting(
        q_buckets, k_buckets, n_buckets, from_keep=False, rank_by_sort=rank_by_sort
    )
    expected = (P._sort_rows_torch(q_buckets), P._sort_rows_torch(k_buckets))
    for got, want in zip(counted, expected, strict=True):
        assert torch.equal(got.perm.cpu(), want.perm.cpu())
        assert torch.equal(got.bucket.cpu(), want.bucket.cpu())
        assert torch.equal(got.composite.cpu(), want.composite.cpu())


def test_counting_sort_reads_strided_input(device: str) -> None:
    # A (B, H, T) tensor seen as (B, T, H): the kernel must follow the strides.
    base = _random_hash(2, 50, 4, 5, seed=1).permute(0, 2, 1).contiguous().to(device)
    strided = base.permute(0, 2, 1)
    dense = _random_hash(2, 50, 4, 5, seed=2).to(device)
    q_rows, k_rows = P._sort_rows_pair_counting(strided, dense, 5, from_keep=False)
    assert torch.equal(q_rows.perm.cpu(), P._sort_rows_torch(strided.contiguous()).perm.cpu())
    assert torch.equal(k_rows.perm.cpu(), P._sort_rows_torch(dense).perm.cpu())


def test_keep_masks_compact_kept_rows_first_in_time_order(device: str) -> None:
    g = torch.Generator().manual_seed(3)
    q_keep = (torch.rand(1, 40, 2, generator=g) < 0.5).to(device)
    k_keep = (torch.rand(1, 40, 2, generator=g) < 0.5).to(device)
    rows = P._sort_rows_pair(q_keep, k_keep, 2, from_keep=True)
    for keep, sorted_rows, dropped_bucket in zip((q_keep, k_keep), rows, (1, 2), strict=True):
        for h in range(2):
            kept = torch.nonzero(keep[0, :, h].cpu()).flatten().to(torch.int32)
            dropped = torch.nonzero(~keep[0, :, h].cpu()).flatten().to(torch.int32)
            assert torch.equal(sorted_rows.perm[h].cpu(), torch.cat([kept, dropped]))
            assert set(sorted_rows.bucket[h, : len(kept)].cpu().tolist()) <= {0}
            assert set(sorted_rows.bucket[h, len(kept) :].cpu().tolist()) <= {dropped_bucket}


def test_large_bucket_ids_use_the_torch_sort(device: str) -> None:
    buckets = torch.tensor([[[1000], [3], [1000], [3]]], device=device)
    q_rows, k_rows = P._sort_rows_pair(buckets, buckets, 1000)
    assert q_rows.perm.cpu().tolist() == [[1, 3, 0, 2]]
    assert k_rows.bucket.cpu().tolist() == [[3, 3, 1000, 1000]]


@pytest.mark.parametrize("T,n_buckets", [(1, 1), (37, 1), (100, 3), (257, 8), (200, 64)])
@pytest.mark.parametrize("blocks", [(16, 16), (32, 16), (16, 64)])
def test_tile_ranges_match_searchsorted(
    device: str, T: int, n_buckets: int, blocks: tuple[int, int]
) -> None:
    qh = _random_hash(2, T, 2, n_buckets, seed=7).to(device)
    kh = _random_hash(2, T, 2, n_buckets, seed=8).to(device)
    plan = P.hash_plan(qh, kh, n_buckets - 1)
    bm, bn = blocks
    got_q, want_q = P.query_tile_ranges(plan, bm, bn), P.query_tile_ranges_torch(plan, bm, bn)
    for field in ("start", "n_full", "end"):
        assert torch.equal(getattr(got_q, field).cpu(), getattr(want_q, field).cpu()), field
    got_k, want_k = P.key_tile_ranges(plan, bn, bm), P.key_tile_ranges_torch(plan, bn, bm)
    for field in ("start", "n_diag", "n_full", "end"):
        assert torch.equal(getattr(got_k, field).cpu(), getattr(want_k, field).cpu()), field


def test_query_ranges_cover_exactly_the_allowed_keys(device: str) -> None:
    """Every allowed key of a query tile lies in [start, end); full tiles are all allowed."""
    T, bm, bn = 90, 16, 8
    qh = _random_hash(1, T, 1, 3, seed=11).to(device)
    kh = _random_hash(1, T, 1, 3, seed=12).to(device)
    plan = P.hash_plan(qh, kh, 2)
    r = P.query_tile_ranges(plan, bm, bn)
    qpos, qb = plan.queries.perm[0].cpu(), plan.queries.bucket[0].cpu()
    kpos, kb = plan.keys.perm[0].cpu(), plan.keys.bucket[0].cpu()
    allowed = (qb[:, None] == kb[None, :]) & (kpos[None, :] <= qpos[:, None])  # sorted order
    for tile in range(r.start.shape[1]):
        rows = slice(tile * bm, min(T, (tile + 1) * bm))
        start, n_full, end = (int(x[0, tile]) for x in (r.start, r.n_full, r.end))
        cols = allowed[rows].any(0).nonzero().flatten()
        if len(cols):
            assert start <= int(cols.min()) and int(cols.max()) < end
        assert bool(allowed[rows, start : start + n_full * bn].all())


def test_density_counts_allowed_pairs(device: str) -> None:
    T = 50
    qh = _random_hash(1, T, 2, 4, seed=5)
    kh = _random_hash(1, T, 2, 4, seed=6)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    same = qh.permute(0, 2, 1)[..., :, None] == kh.permute(0, 2, 1)[..., None, :]
    expected = float((same & causal).sum()) / float(causal.sum() * 2)
    plan = P.hash_plan(qh.to(device), kh.to(device), 3)
    assert P.density(plan) == pytest.approx(expected)

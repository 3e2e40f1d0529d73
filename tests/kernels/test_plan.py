"""The plan kernels (counting sort, tile ranges) against their torch reference versions."""

from __future__ import annotations

import pytest
import torch

from scfa_kernels import plan as P

# On a CPU every case runs the kernels through Triton's interpreter: seconds each.
pytestmark = pytest.mark.slow


def _random_ids(B: int, T: int, H: int, low: int, high: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (B, T, H), generator=g)


def _assert_same_plan(got: P.SparsityPlan, want: P.SparsityPlan) -> None:
    for field in ("perm", "bucket", "composite"):
        assert torch.equal(getattr(got, field).cpu(), getattr(want, field).cpu()), field


# tl.sort is slow under the interpreter: the sort-ranked path gets a few small cases.
SORT_CASES = [(T, nb, False) for T in (1, 5, 127, 128, 129, 300, 1100) for nb in (1, 2, 7, 64)]
SORT_CASES += [(1, 64, True), (33, 9, True), (100, 64, True), (130, 2, True)]


@pytest.mark.parametrize(("T", "n_buckets", "rank_by_sort"), SORT_CASES)
def test_counting_sort_matches_stable_torch_sort(
    device: str, T: int, n_buckets: int, rank_by_sort: bool
) -> None:
    seed = T * 100 + n_buckets
    q_ids = _random_ids(2, T, 3, 0, n_buckets, seed).to(device)
    k_ids = _random_ids(2, T, 3, 0, n_buckets, seed + 1).to(device)
    counted = P.counting_sort_pair(q_ids, k_ids, n_buckets, False, rank_by_sort)
    _assert_same_plan(counted, P.torch_sort_pair(q_ids, k_ids, n_buckets))


UNMATCHED_CASES = [(1, 1, False), (70, 3, False), (130, 8, False), (33, 9, True), (130, 2, True)]


@pytest.mark.parametrize(("T", "n_buckets", "rank_by_sort"), UNMATCHED_CASES)
def test_out_of_range_ids_sort_last_as_unmatched_sentinels(
    device: str, T: int, n_buckets: int, rank_by_sort: bool
) -> None:
    seed = T + n_buckets
    q_ids = _random_ids(2, T, 3, -3, n_buckets + 3, seed).to(device)
    k_ids = _random_ids(2, T, 3, -3, n_buckets + 3, seed + 1).to(device)
    q_ids[0, 0, 0] = 2**40  # out of range in int64 and after any narrowing cast
    counted = P.counting_sort_pair(q_ids, k_ids, n_buckets, False, rank_by_sort)
    _assert_same_plan(counted, P.torch_sort_pair(q_ids, k_ids, n_buckets))
    q_unmatched, k_unmatched = P.unmatched_buckets(n_buckets)
    assert q_unmatched != k_unmatched and min(q_unmatched, k_unmatched) >= n_buckets
    for side, ids, sentinel in ((0, q_ids, q_unmatched), (1, k_ids, k_unmatched)):
        ids_bh = ids.permute(0, 2, 1).reshape(6, T).cpu()
        outside = (ids_bh < 0) | (ids_bh >= n_buckets)
        n_out = outside.sum(dim=1)
        bucket = counted.bucket[side].cpu()
        perm = counted.perm[side].cpu().long()
        for row in range(6):
            tail = slice(T - int(n_out[row]), T)
            assert (bucket[row, tail] == sentinel).all()
            assert outside[row, perm[row, tail]].all()
            # Stable: the unmatched rows keep their time order.
            assert torch.equal(perm[row, tail], outside[row].nonzero().flatten())


def test_counting_sort_reads_strided_input(device: str) -> None:
    # A (B, H, T) tensor seen as (B, T, H): the kernel must follow the strides.
    base = _random_ids(2, 50, 4, 0, 5, seed=1).permute(0, 2, 1).contiguous().to(device)
    strided = base.permute(0, 2, 1)
    dense = _random_ids(2, 50, 4, 0, 5, seed=2).to(device)
    counted = P.counting_sort_pair(strided, dense, 5, from_keep=False)
    _assert_same_plan(counted, P.torch_sort_pair(strided.contiguous(), dense, 5))


def test_keep_masks_compact_kept_rows_first_in_time_order(device: str) -> None:
    g = torch.Generator().manual_seed(3)
    q_keep = (torch.rand(1, 40, 2, generator=g) < 0.5).to(device)
    k_keep = (torch.rand(1, 40, 2, generator=g) < 0.5).to(device)
    plan = P.qk_plan(q_keep, k_keep)
    dropped_buckets = P.unmatched_buckets(1)
    for keep, rows, dropped_bucket in zip(
        (q_keep, k_keep), (plan.queries, plan.keys), dropped_buckets, strict=True
    ):
        for h in range(2):
            kept = torch.nonzero(keep[0, :, h].cpu()).flatten().to(torch.int32)
            dropped = torch.nonzero(~keep[0, :, h].cpu()).flatten().to(torch.int32)
            assert torch.equal(rows.perm[h].cpu(), torch.cat([kept, dropped]))
            assert set(rows.bucket[h, : len(kept)].cpu().tolist()) <= {0}
            assert set(rows.bucket[h, len(kept) :].cpu().tolist()) <= {dropped_bucket}


def test_many_buckets_use_the_torch_sort(device: str) -> None:
    buckets = torch.tensor([[[1000], [3], [1000], [3]]], device=device)
    plan = P.hash_plan(buckets, buckets, 1001)
    assert plan.queries.perm.cpu().tolist() == [[1, 3, 0, 2]]
    assert plan.keys.bucket.cpu().tolist() == [[3, 3, 1000, 1000]]


@pytest.mark.parametrize("T,n_buckets", [(1, 1), (37, 1), (100, 3), (257, 8), (200, 64)])
@pytest.mark.parametrize("blocks", [(16, 16), (32, 16), (16, 64)])
def test_tile_ranges_match_searchsorted(
    device: str, T: int, n_buckets: int, blocks: tuple[int, int]
) -> None:
    # A few ids out of range too: their rows must get empty ranges, like torch's.
    qh = _random_ids(2, T, 2, -1, n_buckets + 1, seed=7).to(device)
    kh = _random_ids(2, T, 2, -1, n_buckets + 1, seed=8).to(device)
    plan = P.hash_plan(qh, kh, n_buckets)
    bm, bn = blocks
    got_q, want_q = P.query_tile_ranges(plan, bm, bn), P.query_tile_ranges_torch(plan, bm, bn)
    for field in ("start", "n_full", "end"):
        assert torch.equal(getattr(got_q, field).cpu(), getattr(want_q, field).cpu()), field
    got_k, want_k = P.key_tile_ranges(plan, bm, bn), P.key_tile_ranges_torch(plan, bm, bn)
    for field in ("start", "n_diag", "n_full", "end"):
        assert torch.equal(getattr(got_k, field).cpu(), getattr(want_k, field).cpu()), field


def test_query_ranges_cover_exactly_the_allowed_keys(device: str) -> None:
    """Every allowed key of a query tile lies in [start, end); full tiles are all allowed."""
    T, bm, bn = 90, 16, 8
    qh = _random_ids(1, T, 1, 0, 3, seed=11).to(device)
    kh = _random_ids(1, T, 1, 0, 3, seed=12).to(device)
    plan = P.hash_plan(qh, kh, 3)
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
    qh = _random_ids(1, T, 2, 0, 4, seed=5)
    kh = _random_ids(1, T, 2, 0, 4, seed=6)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    same = qh.permute(0, 2, 1)[..., :, None] == kh.permute(0, 2, 1)[..., None, :]
    expected = float((same & causal).sum()) / float(causal.sum() * 2)
    plan = P.hash_plan(qh.to(device), kh.to(device), 4)
    assert P.density(plan) == pytest.approx(expected)


def test_host_grid_helpers_match_triton() -> None:
    # The host-side copies exist for speed (docs/performance-notes.md); they must give
    # Triton's answers.
    import triton

    from scfa_kernels.config import ceil_div, next_power_of_2

    for n in range(0, 2100):
        assert next_power_of_2(n) == triton.next_power_of_2(n), n
    for a in range(0, 600):
        for b in (1, 2, 3, 16, 32, 64, 100, 128, 1024):
            assert ceil_div(a, b) == triton.cdiv(a, b), (a, b)


def test_plan_row_views_are_built_once(device: str) -> None:
    g = torch.Generator().manual_seed(0)
    q_ids, k_ids = (torch.randint(0, 4, (1, 64, 2), generator=g).to(device) for _ in "qk")
    plan = P.hash_plan(q_ids, k_ids, 4)
    assert plan.queries is plan.queries and plan.keys is plan.keys
    assert torch.equal(plan.queries.perm, plan.perm[0])
    assert torch.equal(plan.keys.composite, plan.composite[1])

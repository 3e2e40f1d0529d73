"""The sparsity plan: the order in which the kernels visit rows, and each tile's range.

Both patterns reduce to one structure. Every query and key gets a bucket id; rows are
sorted by (bucket, position), stably, so positions stay in time order inside a bucket.
Query t may see key s iff their buckets are equal and s <= t.

* hash-sparse: the buckets are the hashes.
* Ids outside [0, n_buckets) go to sentinel buckets after every real one, different for
  queries and keys (see `_triton_common`), so they see nothing and are seen by nothing.
* QK-sparse: one bucket; kept rows are bucket 0 and dropped rows are out of range. The
  sort is then a stable compaction.

With the composite key ``bucket * T + position`` (monotone in the sorted order), the keys a
query tile may see form one contiguous range of sorted keys, found by binary search: from
the start of the tile's first bucket to the last key not after its last query. The leading
part of that range whose keys every query in the tile may see ("full" tiles) needs no mask.
The same holds the other way round for the queries that see a key tile (backward).
All of this is O(T log T) work per call on the device; nothing of size T x T exists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ._triton_common import UNMATCHED_KEY_OFFSET, UNMATCHED_QUERY_OFFSET
from ._triton_plan import key_tile_ranges_kernel, query_tile_ranges_kernel
from ._triton_sort import bucket_histogram_kernel, bucket_scatter_kernel
from .config import ceil_div, next_power_of_2


@dataclass(frozen=True)
class SortedRows:
    """Rows of one side (queries or keys) in visiting order, per (batch*head)."""

    perm: torch.Tensor  # (BH, T) int32: original position of each sorted slot
    bucket: torch.Tensor  # (BH, T) int32: bucket id of each sorted slot
    composite: torch.Tensor  # (BH, T) int64: bucket * T + position, ascending


@dataclass(frozen=True)
class QueryTileRanges:
    """For each query tile: the sorted key slots it visits (forward and dQ)."""

    block_m: int
    block_n: int
    start: torch.Tensor  # (BH, n_tiles) int32: first key slot
    n_full: torch.Tensor  # (BH, n_tiles) int32: unmasked key tiles from `start`
    end: torch.Tensor  # (BH, n_tiles) int32: one past the last key slot
    work: torch.Tensor | None = None  # (1,) int32: key tiles of all ranges, if counted


@dataclass(frozen=True)
class KeyTileRanges:
    """For each key tile: the sorted query slots that see it (dK/dV)."""

    block_m: int
    block_n: int
    start: torch.Tensor  # (BH, n_tiles) int32: first query slot
    n_diag: torch.Tensor  # (BH, n_tiles) int32: masked query tiles from `start`
    n_full: torch.Tensor  # (BH, n_tiles) int32: unmasked query tiles after those
    end: torch.Tensor  # (BH, n_tiles) int32: one past the last query slot
    work: torch.Tensor | None = None  # (1,) int32: query tiles of all ranges, if counted


@dataclass(frozen=True)
class SparsityPlan:
    """Queries ([0]) and keys ([1]) of every (batch*head) row in visiting order.

    Three stacked (2, BH, T) tensors, so the plan crosses the custom-op boundary (forward
    output, backward input) as plain tensors.
    """

    perm: torch.Tensor  # (2, BH, T) int32: original position of each sorted slot
    bucket: torch.Tensor  # (2, BH, T) int32: bucket of each sorted slot
    composite: torch.Tensor  # (2, BH, T) int64: bucket * T + position, ascending per row

    @property
    def seq_len(self) -> int:
        return self.perm.shape[-1]

    # Built once per plan: a launch reads them about 27 times per fwd+bwd, and each build is
    # three tensor views (~10 us of host time; PERF.md, v10).
    @functools.cached_property
    def queries(self) -> SortedRows:
        return SortedRows(self.perm[0], self.bucket[0], self.composite[0])

    @functools.cached_property
    def keys(self) -> SortedRows:
        return SortedRows(self.perm[1], self.bucket[1], self.composite[1])


# Counting sort handles up to this many buckets; more fall back to torch.sort.
COUNTING_SORT_MAX_BUCKETS = 64
# The counting sort ranks rows within a chunk by a one-hot (chunk x buckets) cumulative
# sum up to this many buckets, above by sorting the chunk (PERF.md, v4).
_ONE_HOT_MAX_BUCKETS = 8
_ONE_HOT_ELEMENTS = 8192
_SORT_CHUNK = 1024
_SORT_CHUNK_INTERPRETER = 64
# Chunk histograms a scatter program sums per step, to find its row's offsets.
_CHUNK_GROUP = 64
_CHUNK_GROUP_INTERPRETER = 8
_RANGE_GROUP = 128


def unmatched_buckets(n_buckets: int) -> tuple[int, int]:
    """Sentinel buckets of (queries, keys) whose ids lie outside [0, n_buckets)."""
    return (
        n_buckets + UNMATCHED_QUERY_OFFSET.value,
        n_buckets + UNMATCHED_KEY_OFFSET.value,
    )


def _sort_rows_torch(bucket_bth: torch.Tensor, n_buckets: int, unmatched: int) -> torch.Tensor:
    """(2, BH, T)-ready rows of one side by torch.sort: (perm, bucket) stacked on dim 0."""
    B, T, H = bucket_bth.shape
    ids = bucket_bth.permute(0, 2, 1).reshape(B * H, T)
    in_range = (ids >= 0) & (ids < n_buckets)
    bucket = torch.where(in_range, ids.to(torch.int64), unmatched).to(torch.int32)
    sorted_bucket, perm = torch.sort(bucket, dim=-1, stable=True)
    return torch.stack([perm.to(torch.int32), sorted_bucket])


def torch_sort_pair(q_src: torch.Tensor, k_src: torch.Tensor, n_buckets: int) -> SparsityPlan:
    """Stable sort of queries and keys with torch.sort (bucket counts the counting sort
    does not take); same result as the counting sort."""
    T = q_src.shape[1]
    q_unmatched, k_unmatched = unmatched_buckets(n_buckets)
    q_rows = _sort_rows_torch(q_src, n_buckets, q_unmatched)
    k_rows = _sort_rows_torch(k_src, n_buckets, k_unmatched)
    perm = torch.stack([q_rows[0], k_rows[0]]).contiguous()
    bucket = torch.stack([q_rows[1], k_rows[1]]).contiguous()
    composite = bucket.to(torch.int64) * T + perm
    return SparsityPlan(perm=perm, bucket=bucket, composite=composite)


def counting_sort_pair(
    q_src: torch.Tensor,
    k_src: torch.Tensor,
    n_buckets: int,
    from_keep: bool,
    rank_by_sort: bool | None = None,
) -> SparsityPlan:
    """Stable counting sort of queries and keys on the device: two launches, each one
    program per (side, row, chunk of the row)."""
    B, T, H = q_src.shape
    BH = B * H
    nb = next_power_of_2(max(n_buckets, 2))
    on_gpu = q_src.device.type == "cuda"
    if rank_by_sort is None:
        # tl.sort is slow under the interpreter: CPU runs keep the one-hot ranks (the tests
        # exercise both on the CPU).
        rank_by_sort = nb > _ONE_HOT_MAX_BUCKETS and on_gpu
    if not on_gpu:
        chunk = _SORT_CHUNK_INTERPRETER  # small: the tests cross many chunks
    elif rank_by_sort:
        chunk = _SORT_CHUNK
    else:
        chunk = max(16, min(_SORT_CHUNK, _ONE_HOT_ELEMENTS // nb))
    n_chunks = ceil_div(T, chunk)
    device = q_src.device
    hist = torch.empty((2 * BH, n_chunks, nb), dtype=torch.int32, device=device)
    unmatched = torch.empty((2 * BH, n_chunks), dtype=torch.int32, device=device)
    perm = torch.empty((2, BH, T), dtype=torch.int32, device=device)
    bucket = torch.empty((2, BH, T), dtype=torch.int32, device=device)
    composite = torch.empty((2, BH, T), dtype=torch.int64, device=device)
    grid = (2 * BH * n_chunks,)
    shape_args = (BH, H, T, n_chunks, *q_src.stride(), *k_src.stride(), n_buckets)
    bucket_histogram_kernel[grid](
        q_src,
        k_src,
        hist,
        unmatched,
        *shape_args,
        FROM_KEEP=from_keep,
        NB=nb,
        CHUNK=chunk,
        num_warps=4,
    )
    bucket_scatter_kernel[grid](
        q_src,
        k_src,
        hist,
        unmatched,
        perm,
        bucket,
        composite,
        *shape_args,
        FROM_KEEP=from_keep,
        NB=nb,
        CHUNK=chunk,
        CHUNK_GROUP=_CHUNK_GROUP if on_gpu else _CHUNK_GROUP_INTERPRETER,
        RANK_BY_SORT=rank_by_sort,
        num_warps=4,
    )
    return SparsityPlan(perm=perm, bucket=bucket, composite=composite)


def hash_plan(q_hash: torch.Tensor, k_hash: torch.Tensor, n_buckets: int) -> SparsityPlan:
    """Plan for hash-sparse attention with ids in [0, n_buckets); never reads the ids on
    the host. An id outside that range matches nothing (its query sees no key, its key is
    seen by no query)."""
    if n_buckets <= COUNTING_SORT_MAX_BUCKETS:
        return counting_sort_pair(q_hash, k_hash, n_buckets, from_keep=False)
    return torch_sort_pair(q_hash, k_hash, n_buckets)


def qk_plan(q_keep: torch.Tensor, k_keep: torch.Tensor) -> SparsityPlan:
    """Plan for QK-sparse attention: kept rows are bucket 0 of one bucket, dropped rows are
    out of range, so they see nothing and are seen by nothing."""
    return counting_sort_pair(q_keep, k_keep, 1, from_keep=True)


def _tile_bounds(rows: SortedRows, block: int) -> tuple[torch.Tensor, ...]:
    """Composite key and bucket of the first and last row of each tile."""
    T = rows.perm.shape[1]
    first = torch.arange(0, T, block, device=rows.perm.device)
    last = torch.clamp(first + block, max=T) - 1
    return (
        rows.composite[:, first].contiguous(),
        rows.composite[:, last].contiguous(),
        rows.bucket[:, first].contiguous(),
        rows.bucket[:, last].contiguous(),
    )


def query_tile_ranges_torch(plan: SparsityPlan, block_m: int, block_n: int) -> QueryTileRanges:
    """Reference implementation of `query_tile_ranges` (torch.searchsorted)."""
    T = plan.seq_len
    keys = plan.keys.composite
    qc0, qc1, qb0, qb1 = _tile_bounds(plan.queries, block_m)
    start = torch.searchsorted(keys, qb0.to(torch.int64) * T, right=False)
    end = torch.searchsorted(keys, qc1, right=True)
    # Keys up to the tile's first query are seen by every query, if the tile has one bucket.
    full_end = torch.where(qb0 == qb1, torch.searchsorted(keys, qc0, right=True), start)
    n_full = torch.clamp(full_end - start, min=0) // block_n
    return QueryTileRanges(
        block_m=block_m,
        block_n=block_n,
        start=start.to(torch.int32).contiguous(),
        n_full=n_full.to(torch.int32).contiguous(),
        end=end.to(torch.int32).contiguous(),
    )


def key_tile_ranges_torch(plan: SparsityPlan, block_m: int, block_n: int) -> KeyTileRanges:
    """Reference implementation of `key_tile_ranges` (torch.searchsorted)."""
    T = plan.seq_len
    queries = plan.queries.composite
    kc0, kc1, kb0, kb1 = _tile_bounds(plan.keys, block_n)
    start = torch.searchsorted(queries, kc0, right=False)
    end = torch.searchsorted(queries, (kb1.to(torch.int64) + 1) * T, right=False)
    # Queries from the tile's last key to the end of its bucket see every key of the tile.
    full_start = torch.where(kb0 == kb1, torch.searchsorted(queries, kc1, right=False), end)
    n_diag = (torch.clamp(full_start - start, min=0) + block_m - 1) // block_m
    n_full = torch.clamp(end - (start + n_diag * block_m), min=0) // block_m
    return KeyTileRanges(
        block_m=block_m,
        block_n=block_n,
        start=start.to(torch.int32).contiguous(),
        n_diag=n_diag.to(torch.int32).contiguous(),
        n_full=n_full.to(torch.int32).contiguous(),
        end=end.to(torch.int32).contiguous(),
    )


def _search_steps(T: int) -> int:
    return max(1, (T + 1).bit_length())


def _range_launch(
    kernel,
    tiled: SortedRows,
    searched: SortedRows,
    n_results: int,
    block_m: int,
    block_n: int,
    work: torch.Tensor | None,
    *,
    tile: int,
) -> tuple[torch.Tensor, ...]:
    """Run a range kernel over the tiles of `tile` rows of `tiled`, searching `searched`;
    return its `n_results` int32 (BH, n_tiles) results. Both range kernels take the same
    arguments in the same order but for the number of results. Work is None unless it
    counts work."""
    BH, T = tiled.perm.shape
    n_tiles = ceil_div(T, tile)
    n_groups = ceil_div(n_tiles, _RANGE_GROUP)
    results = torch.empty(
        (n_results, BH, n_tiles), dtype=torch.int32, device=tiled.perm.device
    ).unbind(0)
    kernel[(BH * n_groups,)](
        *(tiled.composite, tiled.bucket, searched.composite),
        *results,
        *(work, T, n_tiles, n_groups),
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        GROUP=_RANGE_GROUP,
        STEPS=_search_steps(T),
        COUNT_WORK=work is not None,
    )
    return results


def query_tile_ranges(
    plan: SparsityPlan, block_m: int, block_n: int, work: torch.Tensor | None = None
) -> QueryTileRanges:
    """Each query tile's key range. With `work` (a zeroed int32 element on the device), also
    adds up the ranges' lengths in key tiles there (for split ranges), without a host read."""
    start, n_full, end = _range_launch(
        query_tile_ranges_kernel, plan.queries, plan.keys, 3, block_m, block_n, work, tile=block_m
    )
    return QueryTileRanges(block_m, block_n, start, n_full, end, work)


def key_tile_ranges(
    plan: SparsityPlan, block_m: int, block_n: int, work: torch.Tensor | None = None
) -> KeyTileRanges:
    """Each key tile's query range; `work` as in `query_tile_ranges`, in query tiles."""
    start, n_diag, n_full, end = _range_launch(
        key_tile_ranges_kernel, plan.keys, plan.queries, 4, block_m, block_n, work, tile=block_n
    )
    return KeyTileRanges(block_m, block_n, start, n_diag, n_full, end, work)


def density(plan: SparsityPlan) -> float:
    """Allowed pairs / causal pairs, in O(T log T) (for reporting, not used by the kernels)."""
    T = plan.seq_len
    q = plan.queries.composite
    keys = plan.keys.composite
    bucket_start = plan.queries.bucket.to(torch.int64) * T
    seen = torch.searchsorted(keys, q, right=True) - torch.searchsorted(keys, bucket_start)
    causal = T * (T + 1) // 2 * q.shape[0]
    return float(seen.sum().item()) / causal

"""The sparsity plan: the order in which the kernels visit rows, and each tile's range.

Both patterns reduce to one structure. Every query and key gets a bucket id; rows are
sorted by (bucket, position), stably, so positions stay in time order inside a bucket.
Query t may see key s iff their buckets are equal and s <= t.

* hash-sparse: the buckets are the hashes.
* QK-sparse: kept rows go to bucket 0; dropped queries to bucket 1 and dropped keys to
  bucket 2, buckets that never match, so dropped rows see nothing and are seen by nothing.
  The sort is then a stable compaction.

With the composite key ``bucket * T + position`` (monotone in the sorted order), the keys a
query tile may see form one contiguous range of sorted keys, found by binary search: from
the start of the tile's first bucket to the last key not after its last query. The leading
part of that range whose keys every query in the tile may see ("full" tiles) needs no mask.
The same holds the other way round for the queries that see a key tile (backward).
All of this is O(T log T) work per call on the device; nothing of size T x T exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


@dataclass(frozen=True)
class KeyTileRanges:
    """For each key tile: the sorted query slots that see it (dK/dV)."""

    block_n: int
    block_m: int
    start: torch.Tensor  # (BH, n_tiles) int32: first query slot
    n_diag: torch.Tensor  # (BH, n_tiles) int32: masked query tiles from `start`
    n_full: torch.Tensor  # (BH, n_tiles) int32: unmasked query tiles after those
    end: torch.Tensor  # (BH, n_tiles) int32: one past the last query slot


@dataclass(frozen=True)
class SparsityPlan:
    seq_len: int
    queries: SortedRows
    keys: SortedRows


def _sort_rows(bucket_bth: torch.Tensor) -> SortedRows:
    """Stable sort of (B, T, H) bucket ids into per-(batch*head) visiting order."""
    B, T, H = bucket_bth.shape
    # The kernels index these as dense (BH, T) arrays; sort keeps its input's strides.
    bucket = bucket_bth.permute(0, 2, 1).to(torch.int32).contiguous().view(B * H, T)
    sorted_bucket, perm = torch.sort(bucket, dim=-1, stable=True)
    perm = perm.to(torch.int32).contiguous()
    sorted_bucket = sorted_bucket.contiguous()
    composite = sorted_bucket.to(torch.int64) * T + perm
    return SortedRows(perm=perm, bucket=sorted_bucket, composite=composite)


def hash_plan(q_hash: torch.Tensor, k_hash: torch.Tensor) -> SparsityPlan:
    return SparsityPlan(
        seq_len=q_hash.shape[1], queries=_sort_rows(q_hash), keys=_sort_rows(k_hash)
    )


def qk_plan(q_keep: torch.Tensor, k_keep: torch.Tensor) -> SparsityPlan:
    q_bucket = (~q_keep).to(torch.int32)  # kept -> 0, dropped -> 1
    k_bucket = (~k_keep).to(torch.int32) * 2  # kept -> 0, dropped -> 2
    return SparsityPlan(
        seq_len=q_keep.shape[1], queries=_sort_rows(q_bucket), keys=_sort_rows(k_bucket)
    )


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


def query_tile_ranges(plan: SparsityPlan, block_m: int, block_n: int) -> QueryTileRanges:
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


def key_tile_ranges(plan: SparsityPlan, block_n: int, block_m: int) -> KeyTileRanges:
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
        block_n=block_n,
        block_m=block_m,
        start=start.to(torch.int32).contiguous(),
        n_diag=n_diag.to(torch.int32).contiguous(),
        n_full=n_full.to(torch.int32).contiguous(),
        end=end.to(torch.int32).contiguous(),
    )


def density(plan: SparsityPlan) -> float:
    """Allowed pairs / causal pairs, in O(T log T) (for reporting, not used by the kernels)."""
    T = plan.seq_len
    q = plan.queries.composite
    keys = plan.keys.composite
    bucket_start = plan.queries.bucket.to(torch.int64) * T
    seen = torch.searchsorted(keys, q, right=True) - torch.searchsorted(keys, bucket_start)
    causal = T * (T + 1) // 2 * q.shape[0]
    return float(seen.sum().item()) / causal

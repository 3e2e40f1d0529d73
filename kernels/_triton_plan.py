"""Plan kernels: a stable counting sort by bucket, and each tile's range by binary search.

They replace `torch.sort` + `torch.searchsorted` (about 1.4 ms at T=16384, B*H=192 on an
H100, see PERF.md) with a handful of small launches.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_common import UNMATCHED_KEY_OFFSET, UNMATCHED_QUERY_OFFSET


@triton.jit
def _bins_of(
    Src,
    bh,
    offs,
    in_seq,
    H,
    stride_b,
    stride_t,
    stride_h,
    n_buckets,
    FROM_KEEP: tl.constexpr,
    NB: tl.constexpr,
):
    """Histogram bin of each slot: its bucket id if in [0, n_buckets), else the unmatched
    bin NB; slots past T get NB + 1 and are neither counted nor stored.

    With FROM_KEEP (QK-sparse, n_buckets = 1) a kept row is bucket 0 and a dropped row is
    out of range. Ids are range-checked in their own dtype, before any narrowing cast.
    """
    b = bh // H
    h = bh % H
    ptrs = Src + b.to(tl.int64) * stride_b + h.to(tl.int64) * stride_h
    ptrs += offs.to(tl.int64) * stride_t
    raw = tl.load(ptrs, mask=in_seq, other=0)
    if FROM_KEEP:
        bins = tl.where(raw != 0, 0, NB)
    else:
        in_range = (raw >= 0) & (raw < n_buckets)
        bins = tl.where(in_range, raw.to(tl.int32), NB)
    return tl.where(in_seq, bins, NB + 1)


@triton.jit
def _sort_one_row(
    Src,
    bh,
    out_row,
    Perm,
    SortedBucket,
    Composite,
    H,
    T,
    stride_b,
    stride_t,
    stride_h,
    n_buckets,
    unmatched_bucket,
    FROM_KEEP: tl.constexpr,
    NB: tl.constexpr,
    CHUNK: tl.constexpr,
    RANK_BY_SORT: tl.constexpr,
):
    """Histogram pass, prefix sum, then a stable scatter pass, chunk by chunk.

    Rows of the unmatched bin go after every real bucket, stored as `unmatched_bucket`.
    A row's rank among the chunk's rows of its bin comes from a one-hot cumulative sum
    (CHUNK x NB work: cheap for few buckets) or, with RANK_BY_SORT, from sorting the chunk
    by (bin, index) (independent of NB).
    """
    lanes = tl.arange(0, CHUNK)
    counts = tl.zeros([NB], dtype=tl.int32)
    for chunk0 in range(0, T, CHUNK):
        offs = chunk0 + lanes
        bins = _bins_of(
            Src,
            bh,
            offs,
            offs < T,
            H,
            stride_b,
            stride_t,
            stride_h,
            n_buckets,
            FROM_KEEP=FROM_KEEP,
            NB=NB,
        )
        counts += tl.histogram(bins, NB, mask=bins < NB)
    next_slot = tl.cumsum(counts, 0) - counts  # first free slot of each bucket
    next_unmatched = tl.sum(counts, 0)  # unmatched rows fill the row's tail
    for chunk0 in range(0, T, CHUNK):
        offs = chunk0 + lanes
        bins = _bins_of(
            Src,
            bh,
            offs,
            offs < T,
            H,
            stride_b,
            stride_t,
            stride_h,
            n_buckets,
            FROM_KEEP=FROM_KEEP,
            NB=NB,
        )
        chunk_counts = tl.histogram(bins, NB, mask=bins < NB)
        n_unmatched = tl.sum((bins == NB).to(tl.int32), 0)
        if RANK_BY_SORT:
            # Sorted by (bin, index), the row at position p of the chunk goes to
            # next_slot[bin] + p - (rows of the chunk in lower bins); unmatched rows to
            # next_unmatched + p - (real rows of the chunk).
            key = tl.sort(bins * CHUNK + lanes)
            bins = key // CHUNK
            offs = chunk0 + key % CHUNK
            real = bins < NB
            lower = tl.cumsum(chunk_counts, 0) - chunk_counts
            real_dest = tl.gather(next_slot - lower, tl.where(real, bins, 0), 0) + lanes
            unmatched_dest = next_unmatched + lanes - tl.sum(chunk_counts, 0)
        else:
            real = bins < NB
            one_hot = (bins[:, None] == tl.arange(0, NB)[None, :]).to(tl.int32)
            # Rows of the same bin earlier in the chunk keep the sort stable.
            earlier = tl.cumsum(one_hot, 0) - one_hot
            real_dest = tl.sum(one_hot * (next_slot[None, :] + earlier), 1)
            unmatched = (bins == NB).to(tl.int32)
            unmatched_dest = next_unmatched + tl.cumsum(unmatched, 0) - unmatched
        dest = out_row + tl.where(real, real_dest, unmatched_dest)
        bucket = tl.where(real, bins, unmatched_bucket)
        stored = bins <= NB
        tl.store(Perm + dest, offs, mask=stored)
        tl.store(SortedBucket + dest, bucket, mask=stored)
        tl.store(Composite + dest, bucket.to(tl.int64) * T + offs, mask=stored)
        next_slot += chunk_counts
        next_unmatched += n_unmatched


@triton.jit
def bucket_sort_pair_kernel(
    QSrc,
    KSrc,
    Perm,
    SortedBucket,
    Composite,
    BH,
    H,
    T,
    q_stride_b,
    q_stride_t,
    q_stride_h,
    k_stride_b,
    k_stride_t,
    k_stride_h,
    n_buckets,
    FROM_KEEP: tl.constexpr,
    NB: tl.constexpr,
    CHUNK: tl.constexpr,
    RANK_BY_SORT: tl.constexpr,
):
    """Stable counting sort of every (batch*head) row of the queries and of the keys.

    One program per (side, row), both sides in one launch: launches and the serial scan,
    not bytes, are what this step costs (PERF.md). Outputs are (2, BH, T): queries, keys.
    Rows with ids outside [0, n_buckets) get the side's unmatched sentinel bucket.
    """
    pid = tl.program_id(0)
    out_row = pid.to(tl.int64) * T
    bh = pid % BH
    if pid < BH:
        _sort_one_row(
            QSrc,
            bh,
            out_row,
            Perm,
            SortedBucket,
            Composite,
            H,
            T,
            q_stride_b,
            q_stride_t,
            q_stride_h,
            n_buckets,
            n_buckets + UNMATCHED_QUERY_OFFSET,
            FROM_KEEP=FROM_KEEP,
            NB=NB,
            CHUNK=CHUNK,
            RANK_BY_SORT=RANK_BY_SORT,
        )
    else:
        _sort_one_row(
            KSrc,
            bh,
            out_row,
            Perm,
            SortedBucket,
            Composite,
            H,
            T,
            k_stride_b,
            k_stride_t,
            k_stride_h,
            n_buckets,
            n_buckets + UNMATCHED_KEY_OFFSET,
            FROM_KEEP=FROM_KEEP,
            NB=NB,
            CHUNK=CHUNK,
            RANK_BY_SORT=RANK_BY_SORT,
        )


@triton.jit
def _search(sorted_bh, T, value, RIGHT: tl.constexpr, STEPS: tl.constexpr):
    """Vectorised lower bound (RIGHT: upper bound) of `value` in sorted_bh[0:T]."""
    lo = tl.zeros(value.shape, dtype=tl.int32)
    hi = tl.full(value.shape, T, dtype=tl.int32)
    for _ in tl.static_range(STEPS):
        active = lo < hi
        mid = (lo + hi) // 2
        probe = tl.load(sorted_bh + mid, mask=active, other=0)
        if RIGHT:
            go_right = probe <= value
        else:
            go_right = probe < value
        lo = tl.where(active & go_right, mid + 1, lo)
        hi = tl.where(active & (~go_right), mid, hi)
    return lo


@triton.jit
def _tile_edges(Comp, Bucket, T, n_tiles, n_groups, BLOCK: tl.constexpr, GROUP: tl.constexpr):
    """This program's GROUP tiles of one row: composite key and bucket of each tile's first
    and last slot, plus (bh, row offset, tile ids, in-range mask)."""
    pid = tl.program_id(0)
    bh = pid // n_groups
    tiles = (pid % n_groups) * GROUP + tl.arange(0, GROUP)
    ok = tiles < n_tiles
    row = bh.to(tl.int64) * T
    first = tiles * BLOCK
    last = tl.minimum(first + BLOCK, T) - 1
    c0 = tl.load(Comp + row + first, mask=ok, other=0)
    c1 = tl.load(Comp + row + last, mask=ok, other=0)
    b0 = tl.load(Bucket + row + first, mask=ok, other=0)
    b1 = tl.load(Bucket + row + last, mask=ok, other=0)
    return bh, row, tiles, ok, c0, c1, b0, b1


@triton.jit
def query_tile_ranges_kernel(
    QComp,
    QBucket,
    KComp,
    Start,
    NFull,
    End,
    T,
    n_tiles,
    n_groups,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GROUP: tl.constexpr,
    STEPS: tl.constexpr,
):
    bh, row, tiles, ok, qc0, qc1, qb0, qb1 = _tile_edges(
        QComp, QBucket, T, n_tiles, n_groups, BLOCK=BLOCK_M, GROUP=GROUP
    )
    keys = KComp + row
    start = _search(keys, T, qb0.to(tl.int64) * T, RIGHT=False, STEPS=STEPS)
    end = _search(keys, T, qc1, RIGHT=True, STEPS=STEPS)
    # Keys up to the tile's first query are seen by all its queries, if it has one bucket.
    full_end = tl.where(qb0 == qb1, _search(keys, T, qc0, RIGHT=True, STEPS=STEPS), start)
    n_full = tl.maximum(full_end - start, 0) // BLOCK_N
    out = bh.to(tl.int64) * n_tiles + tiles
    tl.store(Start + out, start, mask=ok)
    tl.store(NFull + out, n_full, mask=ok)
    tl.store(End + out, end, mask=ok)


@triton.jit
def key_tile_ranges_kernel(
    KComp,
    KBucket,
    QComp,
    Start,
    NDiag,
    NFull,
    End,
    T,
    n_tiles,
    n_groups,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GROUP: tl.constexpr,
    STEPS: tl.constexpr,
):
    bh, row, tiles, ok, kc0, kc1, kb0, kb1 = _tile_edges(
        KComp, KBucket, T, n_tiles, n_groups, BLOCK=BLOCK_N, GROUP=GROUP
    )
    queries = QComp + row
    start = _search(queries, T, kc0, RIGHT=False, STEPS=STEPS)
    end = _search(queries, T, (kb1.to(tl.int64) + 1) * T, RIGHT=False, STEPS=STEPS)
    # Queries from the tile's last key to its bucket's end see every key of the tile.
    full_start = tl.where(kb0 == kb1, _search(queries, T, kc1, RIGHT=False, STEPS=STEPS), end)
    n_diag = (tl.maximum(full_start - start, 0) + BLOCK_M - 1) // BLOCK_M
    n_full = tl.maximum(end - (start + n_diag * BLOCK_M), 0) // BLOCK_M
    out = bh.to(tl.int64) * n_tiles + tiles
    tl.store(Start + out, start, mask=ok)
    tl.store(NDiag + out, n_diag, mask=ok)
    tl.store(NFull + out, n_full, mask=ok)
    tl.store(End + out, end, mask=ok)

"""The plan's stable counting sort by bucket, parallel over chunks of each row.

Two launches over (side, batch*head row, chunk of CHUNK slots), queries and keys together:

1. histogram: each program counts its chunk's rows per bucket (and the unmatched ones);
2. scatter: each program prefix-sums its row's chunk histograms itself (rows of lower
   buckets anywhere in the row, plus rows of its bucket in earlier chunks), then ranks its
   own rows within the chunk and writes them to their sorted slots.

Every program does one chunk, so the time is two short launches plus the bytes, not a
serial scan of the row (PERF.md, v5). Outputs are (2, BH, T): queries, then keys.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_common import UNMATCHED_KEY_OFFSET, UNMATCHED_QUERY_OFFSET


@triton.jit
def _chunk_bins(
    QSrc,
    KSrc,
    BH,
    H,
    T,
    n_chunks,
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
):
    """This program's (row, chunk, slots, bins).

    row: side * BH + bh. Bin of a slot: its bucket id if in [0, n_buckets), else the
    unmatched bin NB; slots past T get NB + 1 and are neither counted nor stored. With
    FROM_KEEP (QK-sparse, n_buckets = 1) kept rows are bucket 0, dropped rows out of range.
    Ids are range-checked as int64, before any narrowing cast.
    """
    pid = tl.program_id(0)
    row = pid // n_chunks
    chunk = pid % n_chunks
    bh = row % BH
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    slots = chunk * CHUNK + tl.arange(0, CHUNK)
    in_seq = slots < T
    # Widened to int64 on load: queries and keys may hold different integer dtypes.
    # (Distinct pointer names per branch: their types may differ, and a compiled `if` must
    # give a name one type.)
    if row < BH:
        q_ptrs = QSrc + b * q_stride_b + h * q_stride_h + slots.to(tl.int64) * q_stride_t
        raw = tl.load(q_ptrs, mask=in_seq, other=0).to(tl.int64)
    else:
        k_ptrs = KSrc + b * k_stride_b + h * k_stride_h + slots.to(tl.int64) * k_stride_t
        raw = tl.load(k_ptrs, mask=in_seq, other=0).to(tl.int64)
    if FROM_KEEP:
        bins = tl.where(raw != 0, 0, NB)
    else:
        in_range = (raw >= 0) & (raw < n_buckets)
        bins = tl.where(in_range, raw.to(tl.int32), NB)
    return row, chunk, slots, tl.where(in_seq, bins, NB + 1)


@triton.jit
def bucket_histogram_kernel(
    QSrc,
    KSrc,
    Hist,
    Unmatched,
    BH,
    H,
    T,
    n_chunks,
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
):
    """Hist[row, chunk, bucket] and Unmatched[row, chunk]: rows of the chunk per bin."""
    row, chunk, _slots, bins = _chunk_bins(
        QSrc,
        KSrc,
        BH,
        H,
        T,
        n_chunks,
        q_stride_b,
        q_stride_t,
        q_stride_h,
        k_stride_b,
        k_stride_t,
        k_stride_h,
        n_buckets,
        FROM_KEEP=FROM_KEEP,
        NB=NB,
        CHUNK=CHUNK,
    )
    at = row.to(tl.int64) * n_chunks + chunk
    tl.store(Hist + at * NB + tl.arange(0, NB), tl.histogram(bins, NB, mask=bins < NB))
    tl.store(Unmatched + at, tl.sum((bins == NB).to(tl.int32), 0))


@triton.jit
def bucket_scatter_kernel(
    QSrc,
    KSrc,
    Hist,
    Unmatched,
    Perm,
    SortedBucket,
    Composite,
    BH,
    H,
    T,
    n_chunks,
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
    CHUNK_GROUP: tl.constexpr,
    RANK_BY_SORT: tl.constexpr,
):
    """Stable scatter of one chunk to its sorted slots.

    A row's rank among the chunk's rows of its bin comes from a one-hot cumulative sum
    (CHUNK x NB work: cheap for few buckets) or, with RANK_BY_SORT, from sorting the chunk
    by (bin, index) (independent of NB). Unmatched rows go after every real bucket, stored
    as the side's sentinel bucket.
    """
    row, chunk, offs, bins = _chunk_bins(
        QSrc,
        KSrc,
        BH,
        H,
        T,
        n_chunks,
        q_stride_b,
        q_stride_t,
        q_stride_h,
        k_stride_b,
        k_stride_t,
        k_stride_h,
        n_buckets,
        FROM_KEEP=FROM_KEEP,
        NB=NB,
        CHUNK=CHUNK,
    )
    # The row's totals per bucket, and the rows of each bin in the chunks before this one.
    row_chunks = row.to(tl.int64) * n_chunks
    bucket_ids = tl.arange(0, NB)
    totals = tl.zeros([NB], dtype=tl.int32)
    earlier_chunks = tl.zeros([NB], dtype=tl.int32)
    unmatched_before = tl.zeros([CHUNK_GROUP], dtype=tl.int32)
    for group0 in range(0, n_chunks, CHUNK_GROUP):
        chunks = group0 + tl.arange(0, CHUNK_GROUP)
        present = chunks < n_chunks
        earlier = chunks < chunk
        ptrs = Hist + (row_chunks + chunks)[:, None] * NB + bucket_ids[None, :]
        hist = tl.load(ptrs, mask=present[:, None], other=0)
        totals += tl.sum(hist, 0)
        earlier_chunks += tl.sum(tl.where(earlier[:, None], hist, 0), 0)
        unmatched = tl.load(Unmatched + row_chunks + chunks, mask=present, other=0)
        unmatched_before += tl.where(earlier, unmatched, 0)
    next_slot = tl.cumsum(totals, 0) - totals + earlier_chunks  # this chunk's first slots
    next_unmatched = tl.sum(totals, 0) + tl.sum(unmatched_before, 0)

    lanes = tl.arange(0, CHUNK)
    chunk_counts = tl.histogram(bins, NB, mask=bins < NB)
    if RANK_BY_SORT:
        # Sorted by (bin, index), the row at position p of the chunk goes to
        # next_slot[bin] + p - (rows of the chunk in lower bins); unmatched rows to
        # next_unmatched + p - (real rows of the chunk).
        key = tl.sort(bins * CHUNK + lanes)
        bins = key // CHUNK
        offs = chunk * CHUNK + key % CHUNK
        real = bins < NB
        lower = tl.cumsum(chunk_counts, 0) - chunk_counts
        real_dest = tl.gather(next_slot - lower, tl.where(real, bins, 0), 0) + lanes
        unmatched_dest = next_unmatched + lanes - tl.sum(chunk_counts, 0)
    else:
        real = bins < NB
        one_hot = (bins[:, None] == bucket_ids[None, :]).to(tl.int32)
        # Rows of the same bin earlier in the chunk keep the sort stable.
        earlier_rows = tl.cumsum(one_hot, 0) - one_hot
        real_dest = tl.sum(one_hot * (next_slot[None, :] + earlier_rows), 1)
        unmatched_rows = (bins == NB).to(tl.int32)
        unmatched_dest = next_unmatched + tl.cumsum(unmatched_rows, 0) - unmatched_rows
    sentinel = tl.where(row < BH, UNMATCHED_QUERY_OFFSET, UNMATCHED_KEY_OFFSET) + n_buckets
    dest = row.to(tl.int64) * T + tl.where(real, real_dest, unmatched_dest)
    bucket = tl.where(real, bins, sentinel)
    stored = bins <= NB
    tl.store(Perm + dest, offs, mask=stored)
    tl.store(SortedBucket + dest, bucket, mask=stored)
    tl.store(Composite + dest, bucket.to(tl.int64) * T + offs, mask=stored)

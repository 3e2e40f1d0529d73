"""Plan kernels: each tile's range of sorted rows, by binary search on the composite keys.

With the counting sort (`_triton_sort.py`) they replace `torch.sort` + `torch.searchsorted`
(about 1.4 ms at T=16384, B*H=192 on an H100, see PERF.md) with a handful of small launches.
"""

from __future__ import annotations

import triton
import triton.language as tl


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
def _count_work(Work, start, end, ok, BLOCK: tl.constexpr):
    """Add this program's range lengths, in tiles of BLOCK, to the launch's total: the
    kernels size the pieces of split ranges from it (`_triton_common.piece_length`)."""
    tiles = tl.where(ok, (tl.maximum(end - start, 0) + BLOCK - 1) // BLOCK, 0)
    tl.atomic_add(Work, tl.sum(tiles, 0), sem="relaxed")


@triton.jit
def query_tile_ranges_kernel(
    QComp,
    QBucket,
    KComp,
    Start,
    NFull,
    End,
    Work,
    T,
    n_tiles,
    n_groups,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GROUP: tl.constexpr,
    STEPS: tl.constexpr,
    COUNT_WORK: tl.constexpr,
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
    if COUNT_WORK:
        _count_work(Work, start, end, ok, BLOCK=BLOCK_N)


@triton.jit
def key_tile_ranges_kernel(
    KComp,
    KBucket,
    QComp,
    Start,
    NDiag,
    NFull,
    End,
    Work,
    T,
    n_tiles,
    n_groups,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GROUP: tl.constexpr,
    STEPS: tl.constexpr,
    COUNT_WORK: tl.constexpr,
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
    if COUNT_WORK:
        _count_work(Work, start, end, ok, BLOCK=BLOCK_M)

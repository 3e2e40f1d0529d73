"""Pieces shared by the kernels: the bucket sentinels, which tile a program owns, tile loaders.

Bucket sentinels (the one definition; the plan's torch fallback uses them too):

* ``QUERY_PAD_BUCKET`` / ``KEY_PAD_BUCKET``: the bucket a masked load gives a query / key
  slot past T. They differ from each other and from every real or sentinel bucket (>= 0),
  so padding never matches anything.
* ``UNMATCHED_QUERY_OFFSET`` / ``UNMATCHED_KEY_OFFSET``: a query whose id lies outside
  ``[0, n_buckets)`` sorts under bucket ``n_buckets + UNMATCHED_QUERY_OFFSET``, such a key
  under ``n_buckets + UNMATCHED_KEY_OFFSET``: after every real bucket, and never equal to
  each other, so such a query sees nothing and such a key is seen by nothing. QK-sparse is
  the case ``n_buckets = 1``: kept rows are bucket 0, dropped rows are out of range.
"""

from __future__ import annotations

import triton
import triton.language as tl

QUERY_PAD_BUCKET: tl.constexpr = tl.constexpr(-2)
KEY_PAD_BUCKET: tl.constexpr = tl.constexpr(-1)
UNMATCHED_QUERY_OFFSET: tl.constexpr = tl.constexpr(0)
UNMATCHED_KEY_OFFSET: tl.constexpr = tl.constexpr(1)


@triton.jit
def program_tile(n_tiles, H, T, REVERSED: tl.constexpr, MAX_PIECES: tl.constexpr = 1):
    """(bh, tile, b, h, row_base, piece) of this program in a 1-D grid of
    MAX_PIECES * BH * n_tiles programs.

    A 1-D grid has no 65535 limit on batch*heads. REVERSED starts the last tile of each row
    first (the query tiles that see the most keys, for the forward and dQ). With
    MAX_PIECES > 1 the grid holds MAX_PIECES copies of the tiles, piece-major: program
    ``piece * BH * n_tiles + t`` walks piece `piece` of tile t's range (`range_piece`).
    """
    pid = tl.program_id(0)
    piece = 0
    if MAX_PIECES > 1:
        per_piece = tl.num_programs(0) // MAX_PIECES
        piece = pid // per_piece
        pid = pid % per_piece
    bh = pid // n_tiles
    tile = pid % n_tiles
    if REVERSED:
        tile = n_tiles - 1 - tile
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    return bh, tile, b, h, bh.to(tl.int64) * T, piece


@triton.jit
def piece_length(Work, n_slots, MIN_TILES: tl.constexpr):
    """Tiles per piece of a split range: the launch's total range length (counted by the
    plan's range kernel) over `n_slots`, at least MIN_TILES. Only ranges at least twice as
    long as a fair share of the work are cut, so balanced launches run whole, without the
    atomics and merges of pieces; the long ranges of a large bucket are cut."""
    work = tl.load(Work)
    return tl.maximum((work + n_slots - 1) // n_slots, MIN_TILES)


@triton.jit
def range_piece(
    start,
    end,
    piece,
    Work,
    n_slots,
    BLOCK: tl.constexpr,
    MAX_PIECES: tl.constexpr,
    MIN_TILES: tl.constexpr,
):
    """(first, stop, n_live): the tiles [first, stop) of the range [start, end) of sorted
    slots, cut into tiles of BLOCK, that piece `piece` walks, and how many pieces are not
    empty.

    A range of n tiles is cut into min(MAX_PIECES, n // piece_length) pieces of equal
    length (the last may be shorter), each at least piece_length long: long ranges, such as
    those of a large bucket, are spread over several programs instead of setting the
    kernel's length alone. An empty range gives n_live = 0 (piece 0 still writes its
    zeros); n_live > 1 means the pieces write partial results that a second pass combines.
    With MAX_PIECES = 1 nothing is read: the range is one piece.
    """
    piece_tiles = MIN_TILES
    if MAX_PIECES > 1:
        piece_tiles = piece_length(Work, n_slots, MIN_TILES=MIN_TILES)
    n_range = (tl.maximum(end - start, 0) + BLOCK - 1) // BLOCK
    n_pieces = tl.minimum(tl.maximum(n_range // piece_tiles, 1), MAX_PIECES)
    per = tl.maximum((n_range + n_pieces - 1) // n_pieces, 1)
    first = piece * per
    stop = tl.minimum(first + per, n_range)
    n_live = (n_range + per - 1) // per
    return first, stop, n_live


@triton.jit
def tile_loads(slots, T, start, end):
    """(in_range, load_ok): slots inside [0, T), and those worth loading.

    A tile whose range is empty (dropped or stranded rows) loads nothing and only writes
    zeros. The slot block is compared with a scalar bound, never combined as
    ``block & scalar_bool``: Triton 3.9's interpreter splats a scalar comparison to int32,
    and its masked load rejects int32 masks.
    """
    in_range = slots < T
    load_ok = slots < tl.where(end > start, T, 0)
    return in_range, load_ok


@triton.jit
def query_tile_range(tile_start, tile_n_full, tile_end, H, T, n_tiles, MAX_PIECES: tl.constexpr):
    """Which query tile (and piece) this program owns, and the tile's key range (forward
    and dQ). Programs run the last tile of each row first (the tiles that see the most
    keys). Returns (bh, tile, b, h, row_base, piece, start, n_full, end)."""
    bh, tile, b, h, row_base, piece = program_tile(
        n_tiles, H, T, REVERSED=True, MAX_PIECES=MAX_PIECES
    )
    tile_idx = bh * n_tiles + tile
    start = tl.load(tile_start + tile_idx)
    n_full = tl.load(tile_n_full + tile_idx)
    end = tl.load(tile_end + tile_idx)
    return bh, tile, b, h, row_base, piece, start, n_full, end


@triton.jit
def load_query_rows(
    Q,
    q_perm,
    q_bucket_sorted,
    b,
    h,
    row_base,
    tile,
    start,
    end,
    q_strides,
    T,
    BLOCK_M: tl.constexpr,
    HEAD_DIM: tl.constexpr,
):
    """The rows of a query tile: (slots, row_ok, load_ok, q_pos, q_bucket, q);
    `q_strides` = (stride_qb, stride_qt, stride_qh, stride_qd) of Q."""
    stride_qb, stride_qt, stride_qh, stride_qd = q_strides
    slots = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok, load_ok = tile_loads(slots, T, start, end)
    q_pos = tl.load(q_perm + row_base + slots, mask=row_ok, other=0).to(tl.int64)
    q_bucket = tl.load(q_bucket_sorted + row_base + slots, mask=load_ok, other=QUERY_PAD_BUCKET)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = Q + b * stride_qb + h * stride_qh + q_pos[:, None] * stride_qt
    q = tl.load(q_ptrs + offs_d[None, :] * stride_qd, mask=load_ok[:, None], other=0.0)
    return slots, row_ok, load_ok, q_pos, q_bucket, q


@triton.jit
def add_rows(Acc, rows, row_ok, values, HEAD_DIM: tl.constexpr):
    """Atomically add `values` (rows x HEAD_DIM, float32) to Acc[rows, :] of a contiguous
    (BH * T, HEAD_DIM) float32 buffer: the pieces of one split range meet here."""
    offs_d = tl.arange(0, HEAD_DIM)
    ptrs = Acc + rows[:, None] * HEAD_DIM + offs_d[None, :]
    tl.atomic_add(ptrs, values, mask=row_ok[:, None], sem="relaxed")


@triton.jit
def load_key_tile(keys, slot0, MASKED: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Key tile of sorted slots [slot0, slot0 + BLOCK_N): positions, buckets, K and V rows.

    `keys` = (K, V, k_perm_bh, k_bucket_bh, k_base, v_base, stride_kt, stride_kd, stride_vt,
    stride_vd, T): the key rows of one (batch, head), as `key_rows` builds them. Unmasked
    tiles lie inside [0, T) by construction and skip the bounds and the buckets.
    """
    K, V, k_perm_bh, k_bucket_bh, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd, T = (
        keys
    )
    slots = slot0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    if MASKED:
        in_range = slots < T
        k_pos = tl.load(k_perm_bh + slots, mask=in_range, other=0).to(tl.int64)
        k_bucket = tl.load(k_bucket_bh + slots, mask=in_range, other=KEY_PAD_BUCKET)
        k_ptrs = K + k_base + k_pos[:, None] * stride_kt + offs_d[None, :] * stride_kd
        v_ptrs = V + v_base + k_pos[:, None] * stride_vt + offs_d[None, :] * stride_vd
        k = tl.load(k_ptrs, mask=in_range[:, None], other=0.0)
        v = tl.load(v_ptrs, mask=in_range[:, None], other=0.0)
    else:
        k_pos = tl.load(k_perm_bh + slots).to(tl.int64)
        k_bucket = tl.zeros([BLOCK_N], dtype=tl.int32)  # unused without a mask
        k = tl.load(K + k_base + k_pos[:, None] * stride_kt + offs_d[None, :] * stride_kd)
        v = tl.load(V + v_base + k_pos[:, None] * stride_vt + offs_d[None, :] * stride_vd)
    return k_pos, k_bucket, k, v

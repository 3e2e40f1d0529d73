"""Forward kernel: one program per (query tile in sorted order, batch*head).

A query tile loads its rows through the sort permutation, walks the contiguous range of
sorted keys the plan gives it (first the tiles every query may see, unmasked; then the
rest with the bucket/causal mask), and writes the output rows straight back to their
original positions. The log-sum-exp (base 2, scaled) is kept in sorted order for the
backward pass. Rows that see no key output exactly 0 and get LSE = +inf.

Small grids may cut a long key range into pieces (`range_piece`), one program each: a
piece writes its normalised partial output and partial LSE in float32, and
`sparse_attention_fwd_combine_kernel` merges the pieces of each split tile (the
flash-decoding merge). Tiles whose range is one piece write directly, as above.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_common import (
    load_key_tile,
    load_query_rows,
    program_tile,
    query_tile_range,
    range_piece,
)

LOG2E = 1.4426950408889634


@triton.jit
def _attend_range(
    acc,
    m_i,
    l_i,
    rows,
    keys,
    lo,
    hi,
    MASKED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Online softmax of the query tile `rows` = (q, q_pos, q_bucket, start, qk_scale) over
    its key tiles [lo, hi) (slots start + j * BLOCK_N): returns (acc, m_i, l_i).

    MASKED applies the bucket/causal mask; the tiles every query of the tile may see run
    without it (fewer loads, no compare, no select).
    """
    q, q_pos, q_bucket, start, qk_scale = rows
    for j in range(lo, hi):
        k_pos, k_bucket, k, v = load_key_tile(
            keys, start + j * BLOCK_N, MASKED=MASKED, BLOCK_N=BLOCK_N, HEAD_DIM=q.shape[1]
        )
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        if MASKED:
            allowed = (q_bucket[:, None] == k_bucket[None, :]) & (k_pos[None, :] <= q_pos[:, None])
            s = tl.where(allowed, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row with nothing allowed so far keeps m = -inf; shift by 0 to avoid inf - inf.
            m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_shift = m_new
        p = tl.math.exp2(s - m_shift[:, None])
        alpha = tl.math.exp2(m_i - m_shift)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _store_output(Out, LSE, out, lse, b, h, q_pos, row_base, slots, row_ok, o_strides):
    """Output rows to their original positions, LSE to the sorted slots; `o_strides` =
    (stride_ob, stride_ot, stride_oh, stride_od) of Out."""
    stride_ob, stride_ot, stride_oh, stride_od = o_strides
    HEAD_DIM: tl.constexpr = out.shape[1]
    offs_d = tl.arange(0, HEAD_DIM)
    o_ptrs = Out + b * stride_ob + h * stride_oh + q_pos[:, None] * stride_ot
    o_ptrs += offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None])
    tl.store(LSE + row_base + slots, lse, mask=row_ok)


@triton.jit
def sparse_attention_fwd_kernel(
    Q,
    K,
    V,
    Out,
    LSE,
    OutPart,
    LSEPart,
    Work,
    q_perm,
    q_bucket_sorted,
    k_perm,
    k_bucket_sorted,
    tile_start,
    tile_n_full,
    tile_end,
    stride_qb,
    stride_qt,
    stride_qh,
    stride_qd,
    stride_kb,
    stride_kt,
    stride_kh,
    stride_kd,
    stride_vb,
    stride_vt,
    stride_vh,
    stride_vd,
    stride_ob,
    stride_ot,
    stride_oh,
    stride_od,
    H,
    T,
    n_tiles,
    part_rows,
    n_slots,
    qk_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    MAX_PIECES: tl.constexpr,
    MIN_TILES: tl.constexpr,
):
    _bh, tile, b, h, row_base, piece, start, n_full, end = query_tile_range(
        tile_start, tile_n_full, tile_end, H, T, n_tiles, MAX_PIECES=MAX_PIECES
    )
    first, stop, n_live = range_piece(
        start, end, piece, Work, n_slots, BLOCK_N, MAX_PIECES, MIN_TILES
    )
    if MAX_PIECES > 1:
        if piece >= tl.maximum(n_live, 1):
            return  # an empty piece of a short range
    q_strides = (stride_qb, stride_qt, stride_qh, stride_qd)
    slots, row_ok, _, q_pos, q_bucket, q = load_query_rows(
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
        BLOCK_M,
        HEAD_DIM,
    )
    k_base = b * stride_kb + h * stride_kh
    v_base = b * stride_vb + h * stride_vh
    k_perm_bh = k_perm + row_base
    k_bucket_bh = k_bucket_sorted + row_base
    keys = (
        K,
        V,
        k_perm_bh,
        k_bucket_bh,
        k_base,
        v_base,
        stride_kt,
        stride_kd,
        stride_vt,
        stride_vd,
        T,
    )
    rows = (q, q_pos, q_bucket, start, qk_scale)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    # Key tiles [first, stop) of the range: those every query of the tile may see (the
    # first n_full) without a mask, then the rest with it.
    lo, hi = first, tl.minimum(stop, n_full)
    acc, m_i, l_i = _attend_range(acc, m_i, l_i, rows, keys, lo, hi, False, BLOCK_N, DOT_PRECISION)
    lo, hi = tl.maximum(first, n_full), stop
    acc, m_i, l_i = _attend_range(acc, m_i, l_i, rows, keys, lo, hi, True, BLOCK_N, DOT_PRECISION)

    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    if MAX_PIECES > 1:
        if n_live > 1:
            # A piece's partial: its normalised output and its LSE (-inf: saw nothing).
            part = piece.to(tl.int64) * part_rows + row_base + slots
            offs_d = tl.arange(0, HEAD_DIM)
            part_ptrs = OutPart + part[:, None] * HEAD_DIM + offs_d[None, :]
            tl.store(part_ptrs, out, mask=row_ok[:, None])
            lse_part = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("-inf"))
            tl.store(LSEPart + part, lse_part, mask=row_ok)
            return
    lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("inf"))
    o_strides = (stride_ob, stride_ot, stride_oh, stride_od)
    _store_output(Out, LSE, out, lse, b, h, q_pos, row_base, slots, row_ok, o_strides)


@triton.jit
def sparse_attention_fwd_combine_kernel(
    Out,
    LSE,
    OutPart,
    LSEPart,
    Work,
    q_perm,
    tile_start,
    tile_end,
    stride_ob,
    stride_ot,
    stride_oh,
    stride_od,
    H,
    T,
    n_tiles,
    part_rows,
    n_slots,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    MAX_PIECES: tl.constexpr,
    MIN_TILES: tl.constexpr,
):
    """Merge the pieces of each split query tile: one program per (query tile, bh).

    Pieces are merged like key tiles in the forward's online softmax, weighted by their
    partial LSEs; a row no piece saw keeps output 0 and LSE = +inf.
    """
    bh, tile, b, h, row_base, _ = program_tile(n_tiles, H, T, REVERSED=False)
    start = tl.load(tile_start + bh * n_tiles + tile)
    end = tl.load(tile_end + bh * n_tiles + tile)
    _, _, n_live = range_piece(start, end, 0, Work, n_slots, BLOCK_N, MAX_PIECES, MIN_TILES)
    if n_live <= 1:
        return  # written by the forward itself
    slots = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = slots < T
    q_pos = tl.load(q_perm + row_base + slots, mask=row_ok, other=0).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for piece in range(0, n_live):
        part = piece * part_rows + row_base + slots
        lse_p = tl.load(LSEPart + part, mask=row_ok, other=float("-inf"))
        out_p = tl.load(
            OutPart + part[:, None] * HEAD_DIM + offs_d[None, :], mask=row_ok[:, None], other=0.0
        )
        m_new = tl.maximum(m_i, lse_p)
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_shift)
        weight = tl.math.exp2(lse_p - m_shift)
        l_i = l_i * alpha + weight
        acc = acc * alpha[:, None] + weight[:, None] * out_p
        m_i = m_new
    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("inf"))
    o_strides = (stride_ob, stride_ot, stride_oh, stride_od)
    _store_output(Out, LSE, out, lse, b, h, q_pos, row_base, slots, row_ok, o_strides)

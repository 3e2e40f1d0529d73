"""Backward kernels, FlashAttention-2 style, over the same sorted visiting order.

* ``delta``: D_i = rowsum(dO_i * O_i), per sorted query slot.
* ``dkdv``: one program per (key tile, batch*head); walks the query slots that see the
  tile (masked diagonal tiles, unmasked full tiles, masked tail) and accumulates dK, dV
  in registers; writes them to the keys' original positions. No atomics.
* ``dq``: one program per (query tile, batch*head), same key ranges as the forward.

Small grids may cut a long range into pieces (`range_piece`), one program each, as the
forward does. The pieces of a split tile add their float32 partial gradients atomically to a
zeroed buffer in sorted order, and `sparse_attention_bwd_store_rows_kernel` writes those rows to
their original positions in the gradient's dtype. Unsplit tiles store directly (no atomics).

P is recomputed from the saved base-2 LSE; rows that saw no key have LSE = +inf, so their
P, and every gradient through them, is exactly 0.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_common import (
    KEY_PAD_BUCKET,
    QUERY_PAD_BUCKET,
    add_rows,
    load_key_tile,
    load_query_rows,
    program_tile,
    query_tile_range,
    range_piece,
    tile_loads,
)


@triton.jit
def attention_bwd_delta_kernel(
    Out,
    dOut,
    Delta,
    q_perm,
    stride_ob,
    stride_ot,
    stride_oh,
    stride_od,
    stride_dob,
    stride_dot,
    stride_doh,
    stride_dod,
    H,
    T,
    n_tiles,
    BLOCK_M: tl.constexpr,
    HEAD_DIM: tl.constexpr,
):
    _bh, tile, b, h, row_base, _ = program_tile(n_tiles, H, T, REVERSED=False)
    slots = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = slots < T
    pos = tl.load(q_perm + row_base + slots, mask=row_ok, other=0).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    o_ptrs = Out + b * stride_ob + h * stride_oh + pos[:, None] * stride_ot
    do_ptrs = dOut + b * stride_dob + h * stride_doh + pos[:, None] * stride_dot
    o = tl.load(o_ptrs + offs_d[None, :] * stride_od, mask=row_ok[:, None], other=0.0)
    do = tl.load(do_ptrs + offs_d[None, :] * stride_dod, mask=row_ok[:, None], other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(Delta + row_base + slots, delta, mask=row_ok)


@triton.jit
def _dkdv_range(
    dk,
    dv,
    cols,
    queries,
    lo,
    hi,
    MASKED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """dK, dV of the key tile `cols` = (k, v, k_pos, k_bucket, start, qk_scale) over its
    query tiles [lo, hi) (slots start + i * BLOCK_M): returns (dk, dv).

    `queries` = (Q, dOut, LSE, Delta, q_perm_bh, q_bucket_bh, q_base, do_base, row_base,
    stride_qt, stride_qd, stride_dot, stride_dod, T). MASKED applies the bucket/causal mask
    and the bounds; query tiles that see every key of the tile run without them.
    """
    k, v, k_pos, k_bucket, start, qk_scale = cols
    Q, dOut, LSE, Delta, q_perm_bh, q_bucket_bh, q_base, do_base, row_base = queries[:9]
    stride_qt, stride_qd, stride_dot, stride_dod, T = queries[9:]
    for i in range(lo, hi):
        slots = start + i * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, k.shape[1])
        if MASKED:
            in_range = slots < T
            q_pos = tl.load(q_perm_bh + slots, mask=in_range, other=0).to(tl.int64)
            q_bucket = tl.load(q_bucket_bh + slots, mask=in_range, other=QUERY_PAD_BUCKET)
            q_ptrs = Q + q_base + q_pos[:, None] * stride_qt + offs_d[None, :] * stride_qd
            do_ptrs = dOut + do_base + q_pos[:, None] * stride_dot + offs_d[None, :] * stride_dod
            q = tl.load(q_ptrs, mask=in_range[:, None], other=0.0)
            do = tl.load(do_ptrs, mask=in_range[:, None], other=0.0)
            lse = tl.load(LSE + row_base + slots, mask=in_range, other=float("inf"))
            delta = tl.load(Delta + row_base + slots, mask=in_range, other=0.0)
        else:
            q_pos = tl.load(q_perm_bh + slots).to(tl.int64)
            q = tl.load(Q + q_base + q_pos[:, None] * stride_qt + offs_d[None, :] * stride_qd)
            do = tl.load(
                dOut + do_base + q_pos[:, None] * stride_dot + offs_d[None, :] * stride_dod
            )
            lse = tl.load(LSE + row_base + slots)
            delta = tl.load(Delta + row_base + slots)
        # Transposed scores: keys along rows, queries along columns.
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale
        p_t = tl.math.exp2(s_t - lse[None, :])
        if MASKED:
            allowed = (k_bucket[:, None] == q_bucket[None, :]) & (k_pos[:, None] <= q_pos[None, :])
            p_t = tl.where(allowed, p_t, 0.0)
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PRECISION)
    return dk, dv


@triton.jit
def sparse_attention_bwd_dkdv_kernel(
    Q,
    K,
    V,
    dOut,
    dK,
    dV,
    LSE,
    Delta,
    dKAcc,
    dVAcc,
    Work,
    q_perm,
    q_bucket_sorted,
    k_perm,
    k_bucket_sorted,
    tile_start,
    tile_n_diag,
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
    stride_dob,
    stride_dot,
    stride_doh,
    stride_dod,
    stride_dkb,
    stride_dkt,
    stride_dkh,
    stride_dkd,
    stride_dvb,
    stride_dvt,
    stride_dvh,
    stride_dvd,
    H,
    T,
    n_tiles,
    n_slots,
    qk_scale,
    sm_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    MAX_PIECES: tl.constexpr,
    MIN_TILES: tl.constexpr,
):
    # The first key tiles of a bucket are seen by the most queries: they start first.
    bh, tile, b, h, row_base, piece = program_tile(
        n_tiles, H, T, REVERSED=False, MAX_PIECES=MAX_PIECES
    )

    tile_idx = bh * n_tiles + tile
    start = tl.load(tile_start + tile_idx)
    n_diag = tl.load(tile_n_diag + tile_idx)
    n_full = tl.load(tile_n_full + tile_idx)
    end = tl.load(tile_end + tile_idx)
    first, stop, n_live = range_piece(
        start, end, piece, Work, n_slots, BLOCK_M, MAX_PIECES, MIN_TILES
    )
    if MAX_PIECES > 1:
        if piece >= tl.maximum(n_live, 1):
            return  # an empty piece of a short range

    slots = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    key_ok, load_ok = tile_loads(slots, T, start, end)
    k_pos = tl.load(k_perm + row_base + slots, mask=key_ok, other=0).to(tl.int64)
    k_bucket = tl.load(k_bucket_sorted + row_base + slots, mask=load_ok, other=KEY_PAD_BUCKET)
    offs_d = tl.arange(0, HEAD_DIM)
    k_ptrs = K + b * stride_kb + h * stride_kh + k_pos[:, None] * stride_kt
    v_ptrs = V + b * stride_vb + h * stride_vh + k_pos[:, None] * stride_vt
    k = tl.load(k_ptrs + offs_d[None, :] * stride_kd, mask=load_ok[:, None], other=0.0)
    v = tl.load(v_ptrs + offs_d[None, :] * stride_vd, mask=load_ok[:, None], other=0.0)

    q_base = b * stride_qb + h * stride_qh
    do_base = b * stride_dob + h * stride_doh
    q_perm_bh = q_perm + row_base
    q_bucket_bh = q_bucket_sorted + row_base

    cols = (k, v, k_pos, k_bucket, start, qk_scale)
    queries = (Q, dOut, LSE, Delta, q_perm_bh, q_bucket_bh, q_base, do_base, row_base)
    queries += (stride_qt, stride_qd, stride_dot, stride_dod, T)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    # Query tiles [first, stop) of the range: masked diagonal tiles (the first n_diag), then
    # unmasked full ones (the next n_full), then the masked tail.
    n_head = n_diag + n_full
    lo, hi = first, tl.minimum(stop, n_diag)
    dk, dv = _dkdv_range(dk, dv, cols, queries, lo, hi, True, BLOCK_M, DOT_PRECISION)
    lo, hi = tl.maximum(first, n_diag), tl.minimum(stop, n_head)
    dk, dv = _dkdv_range(dk, dv, cols, queries, lo, hi, False, BLOCK_M, DOT_PRECISION)
    lo, hi = tl.maximum(first, n_head), stop
    dk, dv = _dkdv_range(dk, dv, cols, queries, lo, hi, True, BLOCK_M, DOT_PRECISION)

    if MAX_PIECES > 1:
        if n_live > 1:
            add_rows(dKAcc, row_base + slots, key_ok, dk * sm_scale, HEAD_DIM=HEAD_DIM)
            add_rows(dVAcc, row_base + slots, key_ok, dv, HEAD_DIM=HEAD_DIM)
            return
    dk_ptrs = dK + b * stride_dkb + h * stride_dkh + k_pos[:, None] * stride_dkt
    dv_ptrs = dV + b * stride_dvb + h * stride_dvh + k_pos[:, None] * stride_dvt
    dk_ptrs += offs_d[None, :] * stride_dkd
    dv_ptrs += offs_d[None, :] * stride_dvd
    tl.store(dk_ptrs, (dk * sm_scale).to(dK.dtype.element_ty), mask=key_ok[:, None])
    tl.store(dv_ptrs, dv.to(dV.dtype.element_ty), mask=key_ok[:, None])


@triton.jit
def _dq_range(
    dq,
    rows,
    keys,
    lo,
    hi,
    MASKED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """dQ of the query tile `rows` = (q, do, lse, delta, q_pos, q_bucket, start, qk_scale)
    over its key tiles [lo, hi) (slots start + j * BLOCK_N); MASKED as in the forward."""
    q, do, lse, delta, q_pos, q_bucket, start, qk_scale = rows
    for j in range(lo, hi):
        k_pos, k_bucket, k, v = load_key_tile(
            keys, start + j * BLOCK_N, MASKED=MASKED, BLOCK_N=BLOCK_N, HEAD_DIM=q.shape[1]
        )
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        p = tl.math.exp2(s - lse[:, None])
        if MASKED:
            allowed = (q_bucket[:, None] == k_bucket[None, :]) & (k_pos[None, :] <= q_pos[:, None])
            p = tl.where(allowed, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION)
    return dq


@triton.jit
def sparse_attention_bwd_dq_kernel(
    Q,
    K,
    V,
    dOut,
    dQ,
    LSE,
    Delta,
    dQAcc,
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
    stride_dob,
    stride_dot,
    stride_doh,
    stride_dod,
    stride_dqb,
    stride_dqt,
    stride_dqh,
    stride_dqd,
    H,
    T,
    n_tiles,
    n_slots,
    qk_scale,
    sm_scale,
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
    slots, row_ok, load_ok, q_pos, q_bucket, q = load_query_rows(
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
    offs_d = tl.arange(0, HEAD_DIM)
    do_ptrs = dOut + b * stride_dob + h * stride_doh + q_pos[:, None] * stride_dot
    do = tl.load(do_ptrs + offs_d[None, :] * stride_dod, mask=load_ok[:, None], other=0.0)
    lse = tl.load(LSE + row_base + slots, mask=load_ok, other=float("inf"))
    delta = tl.load(Delta + row_base + slots, mask=load_ok, other=0.0)

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
    rows = (q, do, lse, delta, q_pos, q_bucket, start, qk_scale)

    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    lo, hi = first, tl.minimum(stop, n_full)
    dq = _dq_range(dq, rows, keys, lo, hi, False, BLOCK_N, DOT_PRECISION)
    lo, hi = tl.maximum(first, n_full), stop
    dq = _dq_range(dq, rows, keys, lo, hi, True, BLOCK_N, DOT_PRECISION)
    if MAX_PIECES > 1:
        if n_live > 1:
            add_rows(dQAcc, row_base + slots, row_ok, dq * sm_scale, HEAD_DIM=HEAD_DIM)
            return
    dq_ptrs = dQ + b * stride_dqb + h * stride_dqh + q_pos[:, None] * stride_dqt
    dq_ptrs += offs_d[None, :] * stride_dqd
    tl.store(dq_ptrs, (dq * sm_scale).to(dQ.dtype.element_ty), mask=row_ok[:, None])


@triton.jit
def sparse_attention_bwd_store_rows_kernel(
    Acc,
    Dst,
    AccB,
    DstB,
    perm,
    tile_start,
    tile_end,
    Work,
    stride_b,
    stride_t,
    stride_h,
    stride_d,
    H,
    T,
    n_tiles,
    n_slots,
    ROWS: tl.constexpr,
    RANGE_BLOCK: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    MAX_PIECES: tl.constexpr,
    MIN_TILES: tl.constexpr,
    PAIRS: tl.constexpr,
):
    """Rows of split tiles, summed in float32 in sorted order, to their original positions.

    One program per (tile of ROWS sorted slots, bh); the tile's range (tiles of RANGE_BLOCK)
    says, as in the kernel that filled Acc, whether its pieces were split. PAIRS = 2 also
    moves AccB to DstB (dK and dV of the same key tiles; same strides).
    """
    bh, tile, b, h, row_base, _ = program_tile(n_tiles, H, T, REVERSED=False)
    start = tl.load(tile_start + bh * n_tiles + tile)
    end = tl.load(tile_end + bh * n_tiles + tile)
    _, _, n_live = range_piece(start, end, 0, Work, n_slots, RANGE_BLOCK, MAX_PIECES, MIN_TILES)
    if n_live <= 1:
        return  # stored directly by its only piece
    slots = tile * ROWS + tl.arange(0, ROWS)
    row_ok = slots < T
    pos = tl.load(perm + row_base + slots, mask=row_ok, other=0).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    src = (row_base + slots)[:, None] * HEAD_DIM + offs_d[None, :]
    dst = b * stride_b + h * stride_h + pos[:, None] * stride_t + offs_d[None, :] * stride_d
    rows = tl.load(Acc + src, mask=row_ok[:, None], other=0.0)
    tl.store(Dst + dst, rows.to(Dst.dtype.element_ty), mask=row_ok[:, None])
    if PAIRS == 2:
        rows = tl.load(AccB + src, mask=row_ok[:, None], other=0.0)
        tl.store(DstB + dst, rows.to(DstB.dtype.element_ty), mask=row_ok[:, None])

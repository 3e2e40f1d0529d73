"""Forward kernel: one program per (query tile in sorted order, batch*head).

A query tile loads its rows through the sort permutation, walks the contiguous range of
sorted keys the plan gives it (first the tiles every query may see, unmasked; then the
rest with the bucket/causal mask), and writes the output rows straight back to their
original positions. The log-sum-exp (base 2, scaled) is kept in sorted order for the
backward pass. Rows that see no key output exactly 0 and get LSE = +inf.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_common import load_key_tile, load_query_tile

LOG2E = 1.4426950408889634


@triton.jit
def _attend_tile(
    acc,
    m_i,
    l_i,
    q,
    q_pos,
    q_bucket,
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
    slot0,
    T,
    qk_scale,
    MASKED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    k_pos, k_bucket, k, v = load_key_tile(
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
        slot0,
        T,
        MASKED=MASKED,
        BLOCK_N=BLOCK_N,
        HEAD_DIM=HEAD_DIM,
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
    return acc, m_new, l_i


@triton.jit
def sparse_attention_fwd_kernel(
    Q,
    K,
    V,
    Out,
    LSE,
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
    qk_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    b, h, row_base, slots, row_ok, _, start, n_full, end, q_pos, q_bucket, q = load_query_tile(
        Q,
        q_perm,
        q_bucket_sorted,
        tile_start,
        tile_n_full,
        tile_end,
        stride_qb,
        stride_qt,
        stride_qh,
        stride_qd,
        H,
        T,
        n_tiles,
        BLOCK_M=BLOCK_M,
        HEAD_DIM=HEAD_DIM,
    )
    k_base = b * stride_kb + h * stride_kh
    v_base = b * stride_vb + h * stride_vh
    k_perm_bh = k_perm + row_base
    k_bucket_bh = k_bucket_sorted + row_base

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    # First the key tiles every query of the tile may see (no mask), then the rest.
    for j in range(0, n_full):
        acc, m_i, l_i = _attend_tile(
            acc,
            m_i,
            l_i,
            q,
            q_pos,
            q_bucket,
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
            start + j * BLOCK_N,
            T,
            qk_scale,
            MASKED=False,
            BLOCK_N=BLOCK_N,
            HEAD_DIM=HEAD_DIM,
            DOT_PRECISION=DOT_PRECISION,
        )
    for slot0 in range(start + n_full * BLOCK_N, end, BLOCK_N):
        acc, m_i, l_i = _attend_tile(
            acc,
            m_i,
            l_i,
            q,
            q_pos,
            q_bucket,
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
            slot0,
            T,
            qk_scale,
            MASKED=True,
            BLOCK_N=BLOCK_N,
            HEAD_DIM=HEAD_DIM,
            DOT_PRECISION=DOT_PRECISION,
        )

    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    offs_d = tl.arange(0, HEAD_DIM)
    o_ptrs = Out + b * stride_ob + h * stride_oh + q_pos[:, None] * stride_ot
    o_ptrs += offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None])
    lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("inf"))
    tl.store(LSE + row_base + slots, lse, mask=row_ok)

"""Angular LSH bucket ids in one pass: the projection x R and the argmax, no intermediate.

Each program hashes BLOCK_T rows of one (batch, head) of one input (grid axis 1 picks the
input, so q and k share a launch). For a row it computes ``p = x @ R[h]`` block by block over
the rotations and keeps a running argmax of ``concat(p, -p)`` with ``torch.argmax``'s rule:
the first maximal index wins, a NaN counts as the maximum. Products are true float32
(``input_precision="ieee"``): TF32 would move rows across bucket boundaries.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Larger than any column index: the neutral element of the "first index" minimum.
_NO_INDEX = tl.constexpr(2**31 - 1)


@triton.jit
def _block_first_max(values, cols):
    """Row maximum of a (rows, cols) block and the first column holding it."""
    best = tl.max(values, axis=1)
    first = tl.min(tl.where(values == best[:, None], cols[None, :], _NO_INDEX), axis=1)
    return best, first


@triton.jit
def _hash_rows(
    X,
    R,
    OUT,
    b,
    h,
    tile,
    T,
    H,
    stride_b,
    stride_t,
    stride_h,
    stride_d,
    HEAD_DIM: tl.constexpr,
    N_ROT: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_R: tl.constexpr,
    EVEN_D: tl.constexpr,
):
    rows = tile * BLOCK_T + tl.arange(0, BLOCK_T)
    row_ok = rows < T
    x_rows = X + b * stride_b + rows.to(tl.int64) * stride_t + h * stride_h
    r_head = R + h * (HEAD_DIM * N_ROT)

    # Running maxima of p and of -p with their first columns, and the first NaN column.
    best_pos = tl.full([BLOCK_T], float("-inf"), tl.float32)
    best_neg = tl.full([BLOCK_T], float("-inf"), tl.float32)
    arg_pos = tl.zeros([BLOCK_T], tl.int32)
    arg_neg = tl.zeros([BLOCK_T], tl.int32)
    first_nan = tl.full([BLOCK_T], _NO_INDEX, tl.int32)

    for r0 in tl.range(0, N_ROT, BLOCK_R):
        cols = r0 + tl.arange(0, BLOCK_R)
        col_ok = cols < N_ROT
        p = tl.zeros([BLOCK_T, BLOCK_R], tl.float32)
        for d0 in tl.static_range(0, HEAD_DIM, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            x_ptrs = x_rows[:, None] + ds[None, :].to(tl.int64) * stride_d
            r_ptrs = r_head + ds[:, None] * N_ROT + cols[None, :]
            if EVEN_D:
                x = tl.load(x_ptrs, mask=row_ok[:, None], other=0.0)
                r = tl.load(r_ptrs, mask=col_ok[None, :], other=0.0)
            else:
                d_ok = ds < HEAD_DIM
                x = tl.load(x_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
                r = tl.load(r_ptrs, mask=d_ok[:, None] & col_ok[None, :], other=0.0)
            p = tl.dot(x.to(tl.float32), r, p, input_precision="ieee")

        is_nan = (p != p) & col_ok[None, :]
        first_nan = tl.minimum(
            first_nan, tl.min(tl.where(is_nan, cols[None, :], _NO_INDEX), axis=1)
        )
        # Padding columns and NaNs never win the comparisons below.
        usable = col_ok[None, :] & (p == p)
        blk_pos, blk_arg_pos = _block_first_max(tl.where(usable, p, float("-inf")), cols)
        blk_neg, blk_arg_neg = _block_first_max(tl.where(usable, -p, float("-inf")), cols)
        # Strictly greater: on a tie the earlier block (lower column) keeps the row.
        take_pos = blk_pos > best_pos
        best_pos = tl.where(take_pos, blk_pos, best_pos)
        arg_pos = tl.where(take_pos, blk_arg_pos, arg_pos)
        take_neg = blk_neg > best_neg
        best_neg = tl.where(take_neg, blk_neg, best_neg)
        arg_neg = tl.where(take_neg, blk_arg_neg, arg_neg)

    # The p half precedes the -p half, so it wins ties (+0 against -0 included).
    ids = tl.where(best_pos >= best_neg, arg_pos, N_ROT + arg_neg)
    ids = tl.where(first_nan < _NO_INDEX, first_nan, ids)
    tl.store(OUT + (b * T + rows.to(tl.int64)) * H + h, ids, mask=row_ok)


@triton.jit
def lsh_buckets_kernel(
    X0,
    X1,
    R,
    OUT0,
    OUT1,
    stride0_b,
    stride0_t,
    stride0_h,
    stride0_d,
    stride1_b,
    stride1_t,
    stride1_h,
    stride1_d,
    T,
    H,
    n_tiles,
    HEAD_DIM: tl.constexpr,
    N_ROT: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """Bucket ids of X0 into OUT0 (grid axis 1 = 0) and of X1 into OUT1 (axis 1 = 1).

    X0, X1: (B, T, H, HEAD_DIM), any strides, same dtype. R: float32 (H, HEAD_DIM, N_ROT)
    contiguous. OUT0, OUT1: int32 (B, T, H) contiguous. Grid: (B * H * n_tiles, inputs).
    """
    pid = tl.program_id(0)
    tile = pid % n_tiles
    bh = pid // n_tiles
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    EVEN_D: tl.constexpr = HEAD_DIM % BLOCK_D == 0
    # Two calls rather than a pointer select, so each keeps its alignment facts.
    if tl.program_id(1) == 0:
        _hash_rows(
            X0,
            R,
            OUT0,
            b,
            h,
            tile,
            T,
            H,
            stride0_b,
            stride0_t,
            stride0_h,
            stride0_d,
            HEAD_DIM,
            N_ROT,
            BLOCK_T,
            BLOCK_D,
            BLOCK_R,
            EVEN_D,
        )
    else:
        _hash_rows(
            X1,
            R,
            OUT1,
            b,
            h,
            tile,
            T,
            H,
            stride1_b,
            stride1_t,
            stride1_h,
            stride1_d,
            HEAD_DIM,
            N_ROT,
            BLOCK_T,
            BLOCK_D,
            BLOCK_R,
            EVEN_D,
        )

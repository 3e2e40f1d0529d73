"""Pieces shared by the attention kernels: which tile a program owns, and loading a key tile."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def program_tile(n_tiles, H, T, REVERSED: tl.constexpr):
    """(bh, tile, b, h, row_base) of this program in a 1-D grid of BH * n_tiles programs.

    A 1-D grid has no 65535 limit on batch*heads. REVERSED starts the last tile of each row
    first (the query tiles that see the most keys, for the forward and dQ).
    """
    pid = tl.program_id(0)
    bh = pid // n_tiles
    tile = pid % n_tiles
    if REVERSED:
        tile = n_tiles - 1 - tile
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    return bh, tile, b, h, bh.to(tl.int64) * T


# fmt: off
@triton.jit
def load_key_tile(
    K, V, k_perm_bh, k_bucket_bh, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
    slot0, T,
    MASKED: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
):
    # fmt: on
    """Key tile of sorted slots [slot0, slot0 + BLOCK_N): positions, buckets, K and V rows.

    Unmasked tiles lie inside [0, T) by construction and skip the bounds and the buckets.
    """
    slots = slot0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    if MASKED:
        in_range = slots < T
        k_pos = tl.load(k_perm_bh + slots, mask=in_range, other=0).to(tl.int64)
        k_bucket = tl.load(k_bucket_bh + slots, mask=in_range, other=-1)
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

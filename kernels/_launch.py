"""Kernel launches of one attention call: forward, and backward (delta, dK/dV, dQ).

Host-side only: tile sizes come from the config and the plan's shapes, never from device
data, so nothing here waits for the GPU.
"""

from __future__ import annotations

import torch

from . import config as _config
from ._triton_bwd import (
    attention_bwd_delta_kernel,
    sparse_attention_bwd_dkdv_kernel,
    sparse_attention_bwd_dq_kernel,
    sparse_attention_bwd_store_rows_kernel,
)
from ._triton_fwd import (
    LOG2E,
    sparse_attention_fwd_combine_kernel,
    sparse_attention_fwd_kernel,
)
from .config import ceil_div
from .plan import SparsityPlan, key_tile_ranges, query_tile_ranges


def dot_input_precision(dtype: torch.dtype) -> str | None:
    """tl.dot's `input_precision` for `dtype` operands.

    It only affects float32 operands: "ieee" gives true float32 products instead of TF32.
    Float16/bfloat16 products are exact (accumulated in float32) whatever it says, so they
    get None: Triton's default, no claim about a precision that does not apply.
    """
    return "ieee" if dtype == torch.float32 else None


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: SparsityPlan,
    sm_scale: float,
    cfg: _config.KernelConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, T, H, D), lse (BH, T) float32 base-2 log-sum-exp in sorted order)."""
    B, T, H, D = q.shape
    BH = B * H
    launch = cfg.fwd
    n_tiles = ceil_div(T, launch.block_m)
    pieces = cfg.fwd_split.pieces(BH * n_tiles, T)
    work = torch.zeros(1, dtype=torch.int32, device=q.device) if pieces > 1 else None
    ranges = query_tile_ranges(plan, launch.block_m, launch.block_n, work)
    out = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((BH, T), dtype=torch.float32, device=q.device)
    split = {"MAX_PIECES": pieces, "MIN_TILES": cfg.fwd_split.min_tiles}
    work = work if work is not None else lse  # never read when not split
    n_slots = cfg.fwd_split.slots(q.device)
    # Partial outputs of split tiles, written and read only where a range was split.
    if pieces > 1:
        out_part = torch.empty((pieces, BH, T, D), dtype=torch.float32, device=q.device)
        lse_part = torch.empty((pieces, BH, T), dtype=torch.float32, device=q.device)
    else:
        out_part = lse_part = lse  # never read or written: MAX_PIECES = 1 compiles them out
    rows = (plan.queries.perm, plan.queries.bucket, plan.keys.perm, plan.keys.bucket)
    strides = (*q.stride(), *k.stride(), *v.stride(), *out.stride())
    sparse_attention_fwd_kernel[(pieces * BH * n_tiles,)](
        *(q, k, v, out, lse, out_part, lse_part, work),
        *rows,
        *(ranges.start, ranges.n_full, ranges.end),
        *strides,
        *(H, T, n_tiles, BH * T, n_slots, sm_scale * LOG2E),
        BLOCK_M=launch.block_m,
        BLOCK_N=launch.block_n,
        HEAD_DIM=D,
        DOT_PRECISION=dot_input_precision(q.dtype),
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
        **split,
    )
    if pieces > 1:
        sparse_attention_fwd_combine_kernel[(BH * n_tiles,)](
            *(out, lse, out_part, lse_part, work, plan.queries.perm, ranges.start, ranges.end),
            *out.stride(),
            *(H, T, n_tiles, BH * T, n_slots),
            BLOCK_M=launch.block_m,
            BLOCK_N=launch.block_n,
            HEAD_DIM=D,
            **split,
        )
    return out, lse


def backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    plan: SparsityPlan,
    sm_scale: float,
    cfg: _config.KernelConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv), each (B, T, H, D) in the dtype of q."""
    B, T, H, D = q.shape
    BH = B * H
    precision = dot_input_precision(q.dtype)
    scales = (sm_scale * LOG2E, sm_scale)
    rows = (plan.queries.perm, plan.queries.bucket, plan.keys.perm, plan.keys.bucket)

    delta = torch.empty((BH, T), dtype=torch.float32, device=q.device)
    n_delta_tiles = ceil_div(T, cfg.delta_block_m)
    attention_bwd_delta_kernel[(BH * n_delta_tiles,)](
        *(out, do, delta, plan.queries.perm),
        *(*out.stride(), *do.stride()),
        *(H, T, n_delta_tiles),
        BLOCK_M=cfg.delta_block_m,
        HEAD_DIM=D,
    )

    dq = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, T, H, D), dtype=k.dtype, device=q.device)
    dv = torch.empty((B, T, H, D), dtype=v.dtype, device=q.device)

    n_key_tiles = ceil_div(T, cfg.dkdv.block_n)
    n_query_tiles = ceil_div(T, cfg.dq.block_m)
    dkdv_pieces = cfg.dkdv_split.pieces(BH * n_key_tiles, T)
    dq_pieces = cfg.dq_split.pieces(BH * n_query_tiles, T)
    # Split tiles add their float32 gradients here (in sorted order): dK, dV, dQ; and the
    # range kernels count the work of split launches in the two int32 words after them.
    # One zeroed buffer: a single fill for all of it.
    n_acc = 2 * (dkdv_pieces > 1) + (dq_pieces > 1)
    dk_acc = dv_acc = dq_acc = delta  # placeholders, never touched by unsplit launches
    kr_work = qr_work = None
    if n_acc:
        size = n_acc * BH * T * D
        zeroed = torch.zeros(size + 2, dtype=torch.float32, device=q.device)
        acc = zeroed[:size].view(n_acc, BH * T, D)
        counters = zeroed[size:].view(torch.int32)
        if dkdv_pieces > 1:
            dk_acc, dv_acc, kr_work = acc[0], acc[1], counters[0:1]
        if dq_pieces > 1:
            dq_acc, qr_work = acc[n_acc - 1], counters[1:2]
    kr = key_tile_ranges(plan, cfg.dkdv.block_m, cfg.dkdv.block_n, kr_work)
    qr = query_tile_ranges(plan, cfg.dq.block_m, cfg.dq.block_n, qr_work)

    launch = cfg.dkdv
    split = {"MAX_PIECES": dkdv_pieces, "MIN_TILES": cfg.dkdv_split.min_tiles}
    n_slots = cfg.dkdv_split.slots(q.device)
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride())
    sparse_attention_bwd_dkdv_kernel[(dkdv_pieces * BH * n_key_tiles,)](
        *(
            q,
            k,
            v,
            do,
            dk,
            dv,
            lse,
            delta,
            dk_acc,
            dv_acc,
            delta if kr.work is None else kr.work,
        ),
        *rows,
        *(kr.start, kr.n_diag, kr.n_full, kr.end),
        *strides,
        *(H, T, n_key_tiles, n_slots, *scales),
        BLOCK_M=launch.block_m,
        BLOCK_N=launch.block_n,
        HEAD_DIM=D,
        DOT_PRECISION=precision,
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
        **split,
    )
    if dkdv_pieces > 1:
        sparse_attention_bwd_store_rows_kernel[(BH * n_key_tiles,)](
            *(dk_acc, dk, dv_acc, dv, plan.keys.perm, kr.start, kr.end, kr.work),
            *dk.stride(),
            *(H, T, n_key_tiles, n_slots),
            ROWS=launch.block_n,
            RANGE_BLOCK=launch.block_m,
            HEAD_DIM=D,
            PAIRS=2,
            **split,
        )

    launch = cfg.dq
    split = {"MAX_PIECES": dq_pieces, "MIN_TILES": cfg.dq_split.min_tiles}
    n_slots = cfg.dq_split.slots(q.device)
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride())
    sparse_attention_bwd_dq_kernel[(dq_pieces * BH * n_query_tiles,)](
        *(q, k, v, do, dq, lse, delta, dq_acc, delta if qr.work is None else qr.work),
        *rows,
        *(qr.start, qr.n_full, qr.end),
        *strides,
        *(H, T, n_query_tiles, n_slots, *scales),
        BLOCK_M=launch.block_m,
        BLOCK_N=launch.block_n,
        HEAD_DIM=D,
        DOT_PRECISION=precision,
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
        **split,
    )
    if dq_pieces > 1:
        sparse_attention_bwd_store_rows_kernel[(BH * n_query_tiles,)](
            *(dq_acc, dq, dq_acc, dq, plan.queries.perm, qr.start, qr.end, qr.work),
            *dq.stride(),
            *(H, T, n_query_tiles, n_slots),
            ROWS=launch.block_m,
            RANGE_BLOCK=launch.block_n,
            HEAD_DIM=D,
            PAIRS=1,
            **split,
        )
    return dq, dk, dv

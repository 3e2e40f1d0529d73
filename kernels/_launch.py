"""Kernel launches of one attention call: forward, and backward (delta, dK/dV, dQ).

Host-side only: tile sizes come from the config and the plan's shapes, never from device
data, so nothing here waits for the GPU.
"""

from __future__ import annotations

import torch
import triton

from . import config as _config
from ._triton_bwd import (
    attention_bwd_delta_kernel,
    sparse_attention_bwd_dkdv_kernel,
    sparse_attention_bwd_dq_kernel,
)
from ._triton_fwd import LOG2E, sparse_attention_fwd_kernel
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
    launch = cfg.fwd
    ranges = query_tile_ranges(plan, launch.block_m, launch.block_n)
    n_tiles = ranges.start.shape[1]
    out = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    rows = (plan.queries.perm, plan.queries.bucket, plan.keys.perm, plan.keys.bucket)
    strides = (*q.stride(), *k.stride(), *v.stride(), *out.stride())
    sparse_attention_fwd_kernel[(B * H * n_tiles,)](
        *(q, k, v, out, lse),
        *rows,
        *(ranges.start, ranges.n_full, ranges.end),
        *strides,
        *(H, T, n_tiles, sm_scale * LOG2E),
        BLOCK_M=launch.block_m,
        BLOCK_N=launch.block_n,
        HEAD_DIM=D,
        DOT_PRECISION=dot_input_precision(q.dtype),
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
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
    n_delta_tiles = triton.cdiv(T, cfg.delta_block_m)
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

    launch = cfg.dkdv
    kr = key_tile_ranges(plan, launch.block_m, launch.block_n)
    n_key_tiles = kr.start.shape[1]
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride())
    sparse_attention_bwd_dkdv_kernel[(BH * n_key_tiles,)](
        *(q, k, v, do, dk, dv, lse, delta),
        *rows,
        *(kr.start, kr.n_diag, kr.n_full, kr.end),
        *strides,
        *(H, T, n_key_tiles, *scales),
        BLOCK_M=launch.block_m,
        BLOCK_N=launch.block_n,
        HEAD_DIM=D,
        DOT_PRECISION=precision,
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
    )

    launch = cfg.dq
    qr = query_tile_ranges(plan, launch.block_m, launch.block_n)
    n_query_tiles = qr.start.shape[1]
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride())
    sparse_attention_bwd_dq_kernel[(BH * n_query_tiles,)](
        *(q, k, v, do, dq, lse, delta),
        *rows,
        *(qr.start, qr.n_full, qr.end),
        *strides,
        *(H, T, n_query_tiles, *scales),
        BLOCK_M=launch.block_m,
        BLOCK_N=launch.block_n,
        HEAD_DIM=D,
        DOT_PRECISION=precision,
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
    )
    return dq, dk, dv

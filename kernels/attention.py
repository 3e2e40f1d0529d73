"""Public entry points and the autograd function that launches the kernels."""

from __future__ import annotations

import torch
import triton

from . import config as _config
from . import validation
from ._triton_bwd import (
    attention_bwd_delta_kernel,
    sparse_attention_bwd_dkdv_kernel,
    sparse_attention_bwd_dq_kernel,
)
from ._triton_fwd import LOG2E, sparse_attention_fwd_kernel
from .plan import SparsityPlan, hash_plan, key_tile_ranges, qk_plan, query_tile_ranges


def _dot_precision(dtype: torch.dtype) -> str:
    # float32 inputs get true float32 products, not tf32.
    return "ieee" if dtype == torch.float32 else "tf32"


def _forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: SparsityPlan,
    sm_scale: float,
    cfg: _config.KernelConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    B, T, H, D = q.shape
    launch = cfg.fwd
    ranges = query_tile_ranges(plan, launch.block_m, launch.block_n)
    n_tiles = ranges.start.shape[1]
    out = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    # fmt: off
    sparse_attention_fwd_kernel[(B * H * n_tiles,)](
        q, k, v, out, lse,
        plan.queries.perm, plan.queries.bucket, plan.keys.perm, plan.keys.bucket,
        ranges.start, ranges.n_full, ranges.end,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        H, T, n_tiles, sm_scale * LOG2E,
        BLOCK_M=launch.block_m, BLOCK_N=launch.block_n, HEAD_DIM=D,
        DOT_PRECISION=_dot_precision(q.dtype),
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    # fmt: on
    return out, lse


def _backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    do: torch.Tensor,
    plan: SparsityPlan,
    sm_scale: float,
    cfg: _config.KernelConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, T, H, D = q.shape
    BH = B * H
    precision = _dot_precision(q.dtype)
    qk_scale = sm_scale * LOG2E
    sorted_rows = (plan.queries.perm, plan.queries.bucket, plan.keys.perm, plan.keys.bucket)

    delta = torch.empty((BH, T), dtype=torch.float32, device=q.device)
    n_delta_tiles = triton.cdiv(T, cfg.delta_block_m)
    # fmt: off
    attention_bwd_delta_kernel[(BH * n_delta_tiles,)](
        out, do, delta, plan.queries.perm, *out.stride(), *do.stride(), H, T, n_delta_tiles,
        BLOCK_M=cfg.delta_block_m, HEAD_DIM=D,
    )
    # fmt: on

    dq = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, T, H, D), dtype=k.dtype, device=q.device)
    dv = torch.empty((B, T, H, D), dtype=v.dtype, device=q.device)

    launch = cfg.dkdv
    kr = key_tile_ranges(plan, launch.block_n, launch.block_m)
    n_key_tiles = kr.start.shape[1]
    # fmt: off
    sparse_attention_bwd_dkdv_kernel[(BH * n_key_tiles,)](
        q, k, v, do, dk, dv, lse, delta, *sorted_rows,
        kr.start, kr.n_diag, kr.n_full, kr.end,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride(),
        H, T, n_key_tiles, qk_scale, sm_scale,
        BLOCK_N=launch.block_n, BLOCK_M=launch.block_m, HEAD_DIM=D, DOT_PRECISION=precision,
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    # fmt: on

    launch = cfg.dq
    qr = query_tile_ranges(plan, launch.block_m, launch.block_n)
    n_query_tiles = qr.start.shape[1]
    # fmt: off
    sparse_attention_bwd_dq_kernel[(BH * n_query_tiles,)](
        q, k, v, do, dq, lse, delta, *sorted_rows,
        qr.start, qr.n_full, qr.end,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
        H, T, n_query_tiles, qk_scale, sm_scale,
        BLOCK_M=launch.block_m, BLOCK_N=launch.block_n, HEAD_DIM=D, DOT_PRECISION=precision,
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    # fmt: on
    return dq, dk, dv


class _SparseAttention(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        plan: SparsityPlan,
        sm_scale: float,
    ) -> torch.Tensor:
        cfg = _config.select(q.device, q.dtype, q.shape[-1], plan.mean_bucket_rows)
        out, lse = _forward(q, k, v, plan, sm_scale, cfg)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.plan = plan  # type: ignore[attr-defined]
        ctx.sm_scale = sm_scale  # type: ignore[attr-defined]
        ctx.cfg = cfg  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, do: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse = ctx.saved_tensors  # type: ignore[attr-defined]
        plan, sm_scale, cfg = ctx.plan, ctx.sm_scale, ctx.cfg  # type: ignore[attr-defined]
        dq, dk, dv = _backward(q, k, v, out, lse, do, plan, sm_scale, cfg)
        return dq, dk, dv, None, None


def hash_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_hash: torch.Tensor,
    k_hash: torch.Tensor,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Causal attention where query t sees key s iff s <= t and q_hash[b,t,h] == k_hash[b,s,h].

    q, k, v: (B, T, H, D); q_hash, k_hash: integer (B, T, H), bucket ids >= 0.
    Returns (B, T, H, D) in q's dtype; queries that see no key output 0.
    """
    B, T, H, D = validation.check_qkv(q, k, v)
    max_bucket = validation.check_hashes(q_hash, k_hash, B, T, H, q.device)
    scale = validation.resolve_scale(sm_scale, D)
    return _SparseAttention.apply(q, k, v, hash_plan(q_hash, k_hash, max_bucket), scale)


def qk_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_keep: torch.Tensor,
    k_keep: torch.Tensor,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Causal attention where query t sees key s iff s <= t, q_keep[b,t,h] and k_keep[b,s,h].

    q, k, v: (B, T, H, D); q_keep, k_keep: bool (B, T, H).
    Returns (B, T, H, D) in q's dtype; dropped queries output 0 and get 0 gradient.
    """
    B, T, H, D = validation.check_qkv(q, k, v)
    validation.check_keeps(q_keep, k_keep, B, T, H, q.device)
    scale = validation.resolve_scale(sm_scale, D)
    return _SparseAttention.apply(q, k, v, qk_plan(q_keep, k_keep), scale)


__all__ = ["hash_sparse_attention", "qk_sparse_attention"]

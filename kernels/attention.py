"""Public entry points and the autograd function that launches the kernels."""

from __future__ import annotations

import torch

from . import _launch, validation
from . import config as _config
from .plan import SparsityPlan, hash_plan, qk_plan


class _SparseAttention(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        plan: SparsityPlan,
        sm_scale: float,
        mean_bucket_rows: float,
    ) -> torch.Tensor:
        cfg = _config.select(q.device, q.dtype, q.shape[-1], mean_bucket_rows)
        out, lse = _launch.forward(q, k, v, plan, sm_scale, cfg)
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
        dq, dk, dv = _launch.backward(do, q, k, v, out, lse, plan, sm_scale, cfg)
        return dq, dk, dv, None, None, None


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
    n_buckets = max_bucket + 1
    plan = hash_plan(q_hash, k_hash, n_buckets)
    return _SparseAttention.apply(q, k, v, plan, scale, T / n_buckets)


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
    return _SparseAttention.apply(q, k, v, qk_plan(q_keep, k_keep), scale, float(T))


__all__ = ["hash_sparse_attention", "qk_sparse_attention"]

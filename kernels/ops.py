"""The kernels as PyTorch custom operators (namespace ``scfa``), with fake and autograd rules.

* ``scfa::hash_sparse_attention(q, k, v, q_hash, k_hash, sm_scale, n_buckets)``
* ``scfa::qk_sparse_attention(q, k, v, q_keep, k_keep, sm_scale)``
* ``scfa::sparse_attention_backward(do, q, k, v, out, lse, perm, bucket, composite,
  sm_scale, n_buckets, dense)``, the backward of both (QK-sparse is ``n_buckets = 1``;
  `dense`: hash-sparse with one bucket, the case the Hopper kernels take).

The forward operators return ``(out, lse, perm, bucket, composite)``: the output, and what
the backward needs (the base-2 log-sum-exp and the plan's three (2, BH, T) tensors), so the
plan crosses the operator boundary as plain tensors. Nothing here reads device data on the
host: `torch.compile` sees each operator as one opaque node (no graph break), and a step
that calls them can be captured in a CUDA graph. Input checks happen before, in the public
functions of `scfa_kernels.attention`; the operators trust their arguments.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _gluon_bwd, _gluon_fwd, _launch
from . import config as _config
from .hopper import use_hopper
from .plan import SparsityPlan, hash_plan, qk_plan

_ForwardOutputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def mean_bucket_rows(seq_len: int, n_buckets: int) -> float:
    """T / n_buckets: the mean rows per bucket, which picks tile sizes (config.select)."""
    return seq_len / n_buckets


def _forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    plan: SparsityPlan,
    sm_scale: float,
    n_buckets: int,
    dense: bool = False,
) -> _ForwardOutputs:
    """`dense`: hash-sparse with one bucket, whose plan keeps rows in order (the Gluon
    Hopper kernels' case, `hopper.use_hopper`)."""
    T, D = q.shape[1], q.shape[-1]
    cfg = _config.select(q.device, q.dtype, D, mean_bucket_rows(T, n_buckets))
    if use_hopper(q, dense=dense):
        out, lse = _gluon_fwd.forward(q, k, v, plan, sm_scale)
    else:
        out, lse = _launch.forward(q, k, v, plan, sm_scale, cfg)
    return out, lse, plan.perm, plan.bucket, plan.composite


def _forward_outputs_like(q: Tensor) -> _ForwardOutputs:
    """Empty tensors shaped like the forward's outputs (the fake implementation)."""
    B, T, H, D = q.shape
    BH = B * H
    return (
        q.new_empty((B, T, H, D)),
        q.new_empty((BH, T), dtype=torch.float32),
        q.new_empty((2, BH, T), dtype=torch.int32),
        q.new_empty((2, BH, T), dtype=torch.int32),
        q.new_empty((2, BH, T), dtype=torch.int64),
    )


@torch.library.custom_op("scfa::hash_sparse_attention", mutates_args=())
def hash_sparse_attention_op(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_hash: Tensor,
    k_hash: Tensor,
    sm_scale: float,
    n_buckets: int,
) -> _ForwardOutputs:
    """Ids outside [0, n_buckets) match nothing: such a query outputs 0, such a key is
    seen by no query."""
    plan = hash_plan(q_hash, k_hash, n_buckets)
    return _forward(q, k, v, plan, sm_scale, n_buckets, dense=n_buckets == 1)


@torch.library.custom_op("scfa::qk_sparse_attention", mutates_args=())
def qk_sparse_attention_op(
    q: Tensor, k: Tensor, v: Tensor, q_keep: Tensor, k_keep: Tensor, sm_scale: float
) -> _ForwardOutputs:
    # Kept rows form one bucket; dropped rows are out of range (see plan.qk_plan).
    return _forward(q, k, v, qk_plan(q_keep, k_keep), sm_scale, n_buckets=1)


def _backward_kernels(
    do: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, plan: SparsityPlan,
    sm_scale: float, n_buckets: int, dense: bool,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """(dq, dk, dv): the Hopper kernels where `hopper.use_hopper` says so, else the
    portable ones. Either reads the LSE of either forward (sorted order, base 2)."""
    if use_hopper(q, dense=dense):
        return _gluon_bwd.backward(do, q, k, v, out, lse, plan, sm_scale, n_buckets)
    T, D = q.shape[1], q.shape[-1]
    cfg = _config.select(q.device, q.dtype, D, mean_bucket_rows(T, n_buckets))
    return _launch.backward(do, q, k, v, out, lse, plan, sm_scale, cfg)


@torch.library.custom_op("scfa::sparse_attention_backward", mutates_args=())
def sparse_attention_backward_op(
    do: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    perm: Tensor,
    bucket: Tensor,
    composite: Tensor,
    sm_scale: float,
    n_buckets: int,
    dense: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    plan = SparsityPlan(perm=perm, bucket=bucket, composite=composite)
    return _backward_kernels(do, q, k, v, out, lse, plan, sm_scale, n_buckets, dense)


@hash_sparse_attention_op.register_fake
def _hash_sparse_attention_fake(q, k, v, q_hash, k_hash, sm_scale, n_buckets):
    return _forward_outputs_like(q)


@qk_sparse_attention_op.register_fake
def _qk_sparse_attention_fake(q, k, v, q_keep, k_keep, sm_scale):
    return _forward_outputs_like(q)


@sparse_attention_backward_op.register_fake
def _sparse_attention_backward_fake(
    do, q, k, v, out, lse, perm, bucket, composite, sm_scale, n_buckets, dense=False
):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _save_for_backward(ctx, q, k, v, output, sm_scale: float, n_buckets: int, dense: bool) -> None:
    out, lse, perm, bucket, composite = output
    ctx.save_for_backward(q, k, v, out, lse, perm, bucket, composite)
    ctx.sm_scale = sm_scale
    ctx.n_buckets = n_buckets
    ctx.dense = dense
    ctx.mark_non_differentiable(lse, perm, bucket, composite)


def _setup_hash(ctx, inputs, output) -> None:
    q, k, v, _q_hash, _k_hash, sm_scale, n_buckets = inputs
    _save_for_backward(ctx, q, k, v, output, sm_scale, n_buckets, dense=n_buckets == 1)


def _setup_qk(ctx, inputs, output) -> None:
    q, k, v, _q_keep, _k_keep, sm_scale = inputs
    _save_for_backward(ctx, q, k, v, output, sm_scale, n_buckets=1, dense=False)


def _backward(ctx, do, *_unused_grads):
    q, k, v, out, lse, perm, bucket, composite = ctx.saved_tensors
    dq, dk, dv = sparse_attention_backward_op(
        do, q, k, v, out, lse, perm, bucket, composite, ctx.sm_scale, ctx.n_buckets, ctx.dense
    )
    return dq, dk, dv, None, None, None, None


def _backward_qk(ctx, do, *_unused_grads):
    return _backward(ctx, do)[:6]


hash_sparse_attention_op.register_autograd(_backward, setup_context=_setup_hash)
qk_sparse_attention_op.register_autograd(_backward_qk, setup_context=_setup_qk)


class _EagerSparseAttention(torch.autograd.Function):
    """The operators' computation without their dispatch, for eager calls.

    A custom operator's Python dispatch (default filling, autograd and backend redispatch,
    the dynamo-disable wrapper) costs about as much host time as the kernels' GPU time at
    small batch x heads (PERF.md, v6). Eager calls take this path; calls traced by
    `torch.compile` keep the operators, which the compiler sees as opaque nodes.
    """

    @staticmethod
    def forward(ctx, q, k, v, perm, bucket, composite, sm_scale, n_buckets, dense):
        plan = SparsityPlan(perm=perm, bucket=bucket, composite=composite)
        out, lse, *_plan = _forward(q, k, v, plan, sm_scale, n_buckets, dense)
        ctx.save_for_backward(q, k, v, out, lse, perm, bucket, composite)
        ctx.sm_scale = sm_scale
        ctx.n_buckets = n_buckets
        ctx.dense = dense
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse, perm, bucket, composite = ctx.saved_tensors
        plan = SparsityPlan(perm=perm, bucket=bucket, composite=composite)
        dq, dk, dv = _backward_kernels(
            do, q, k, v, out, lse, plan, ctx.sm_scale, ctx.n_buckets, ctx.dense
        )
        return dq, dk, dv, None, None, None, None, None, None


def hash_sparse_attention_eager(
    q: Tensor, k: Tensor, v: Tensor, q_hash: Tensor, k_hash: Tensor, sm_scale: float, n_buckets: int
) -> Tensor:
    """`hash_sparse_attention_op(...)[0]` for eager calls (same kernels, same result)."""
    plan = hash_plan(q_hash, k_hash, n_buckets)
    return _EagerSparseAttention.apply(
        q, k, v, plan.perm, plan.bucket, plan.composite, sm_scale, n_buckets, n_buckets == 1
    )


def qk_sparse_attention_eager(
    q: Tensor, k: Tensor, v: Tensor, q_keep: Tensor, k_keep: Tensor, sm_scale: float
) -> Tensor:
    """`qk_sparse_attention_op(...)[0]` for eager calls (same kernels, same result)."""
    plan = qk_plan(q_keep, k_keep)
    return _EagerSparseAttention.apply(
        q, k, v, plan.perm, plan.bucket, plan.composite, sm_scale, 1, False
    )

"""Public entry points: host-side checks, then the kernels: through the `scfa` custom
operators (`ops.py`) when `torch.compile` traces the call, through a plain autograd function
(the same kernels, less host time per call) when it runs eagerly.

Bucket ids and `n_buckets`: with `n_buckets` given, nothing reads the ids on the host, so a
call never waits for the GPU (torch.compile: no graph break; CUDA graphs: capturable). Ids
outside ``[0, n_buckets)`` then have a defined result: such a query attends nothing and
outputs 0 (gradient 0), such a key is seen by no query. The checking mode
(``check_ids=True``, or the environment variable ``SCFA_CHECK_BUCKETS=1``) instead raises a
ValueError on such ids, at the cost of one synchronising read. Without `n_buckets` the ids
are read once to find the largest (one host sync per call): negative ids are an error.
"""

from __future__ import annotations

import torch

from . import ops, validation


def hash_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_hash: torch.Tensor,
    k_hash: torch.Tensor,
    sm_scale: float | None = None,
    n_buckets: int | None = None,
    *,
    check_ids: bool | None = None,
) -> torch.Tensor:
    """Causal attention where query t sees key s iff s <= t and q_hash[b,t,h] == k_hash[b,s,h].

    q, k, v: (B, T, H, D); q_hash, k_hash: integer (B, T, H) bucket ids.
    n_buckets: ids are in [0, n_buckets); pass it to keep the call free of host syncs. Ids
    outside match nothing (the query outputs 0, the key is seen by no query), or raise
    with `check_ids=True` / SCFA_CHECK_BUCKETS=1. None: read the largest id (one sync).
    Returns (B, T, H, D) in q's dtype; queries that see no key output 0.
    """
    B, T, H, D = validation.check_qkv(q, k, v)
    validation.check_hashes(q_hash, k_hash, B, T, H, q.device)
    scale = validation.resolve_scale(sm_scale, D)
    if n_buckets is None:
        n_buckets = validation.bucket_count_from_ids(q_hash, k_hash)
    else:
        n_buckets = validation.check_n_buckets(n_buckets)
        if validation.bucket_checks_requested() if check_ids is None else check_ids:
            validation.check_ids_in_range(q_hash, k_hash, n_buckets)
    if torch.compiler.is_compiling():
        return ops.hash_sparse_attention_op(q, k, v, q_hash, k_hash, scale, n_buckets)[0]
    return ops.hash_sparse_attention_eager(q, k, v, q_hash, k_hash, scale, n_buckets)


def qk_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_keep: torch.Tensor,
    k_keep: torch.Tensor,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Causal attention where query t sees key s iff s <= t, q_keep[b,t,h] and k_keep[b,s,h].

    q, k, v: (B, T, H, D); q_keep, k_keep: bool (B, T, H). Never reads device data on the
    host. Returns (B, T, H, D) in q's dtype; dropped queries output 0 and get 0 gradient.
    """
    B, T, H, D = validation.check_qkv(q, k, v)
    validation.check_keeps(q_keep, k_keep, B, T, H, q.device)
    scale = validation.resolve_scale(sm_scale, D)
    if torch.compiler.is_compiling():
        return ops.qk_sparse_attention_op(q, k, v, q_keep, k_keep, scale)[0]
    return ops.qk_sparse_attention_eager(q, k, v, q_keep, k_keep, scale)


__all__ = ["hash_sparse_attention", "qk_sparse_attention"]

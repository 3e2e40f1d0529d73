"""Dense masked attention: the slow, exact truth every fast path is tested against.

Semantics (README, "The kernels"): inputs are ``(B, T, H, D)``; query ``t`` may see key ``s``
only when ``s <= t`` (original positions) and the pattern allows the pair:

* hash-sparse: ``q_hash[b, t, h] == k_hash[b, s, h]``; with ``n_buckets`` given, ids
  outside ``[0, n_buckets)`` match nothing (such a query sees no key, such a key no query);
* QK-sparse: ``q_keep[b, t, h] and k_keep[b, s, h]``.

A query with no allowed key ("stranded") outputs exactly 0 and gets zero gradient, never NaN.
Everything is computed in float32, or float64 when an input is float64. ``rows`` restricts the
work to some query positions so a check at long T needs ``R * T`` memory, not ``T * T``; the
``*_grads`` functions give exact gradients for all rows in ``O(chunk * T)`` memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "hash_mask",
    "hash_sparse_attention",
    "hash_sparse_attention_grads",
    "masked_attention",
    "masked_attention_grads",
    "qk_mask",
    "qk_sparse_attention",
    "qk_sparse_attention_grads",
]

MaskFn = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------- input checks


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, *, q_rows_may_differ: bool) -> None:
    """q, k, v must be (B, T, H, D) alike; q may hold fewer rows when it is a row subset."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (B, T, H, D), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    if k.shape != v.shape:
        raise ValueError(
            f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    b, _, h, d = k.shape
    if q_rows_may_differ:
        ok = q.shape[0] == b and q.shape[2] == h and q.shape[3] == d
    else:
        ok = q.shape == k.shape
    if not ok:
        raise ValueError(
            f"q shape {tuple(q.shape)} does not match k/v shape {tuple(k.shape)}"
            + (" (only the row axis may differ)" if q_rows_may_differ else "")
        )


def _check_pair(name_q: str, qt: Tensor, name_k: str, kt: Tensor, *, want_bool: bool) -> None:
    """A (B, T, H) pattern pair: same shape, integer ids (hash) or booleans (keep)."""
    for name, t in ((name_q, qt), (name_k, kt)):
        if t.dim() != 3:
            raise ValueError(f"{name} must be 3-D (B, T, H), got shape {tuple(t.shape)}")
        if want_bool and t.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor, got dtype {t.dtype}")
        if not want_bool and (t.dtype == torch.bool or t.is_floating_point() or t.is_complex()):
            raise TypeError(f"{name} must be an integer tensor, got dtype {t.dtype}")
    if qt.shape != kt.shape:
        raise ValueError(
            f"{name_q} and {name_k} must have the same shape, "
            f"got {tuple(qt.shape)} and {tuple(kt.shape)}"
        )


def _resolve_rows(rows: Tensor | None, seq_len: int, device: torch.device) -> Tensor:
    if rows is None:
        return torch.arange(seq_len, device=device)
    if rows.dim() != 1 or rows.dtype != torch.long:
        raise ValueError(
            f"rows must be a 1-D LongTensor of query positions, got shape {tuple(rows.shape)} "
            f"dtype {rows.dtype}"
        )
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= seq_len):
        raise ValueError(
            f"rows must lie in [0, {seq_len}), got [{int(rows.min())}, {int(rows.max())}]"
        )
    return rows.to(device)


def _resolve_scale(sm_scale: float | None, head_dim: int) -> float:
    if sm_scale is None:
        return 1.0 / math.sqrt(head_dim)
    if not math.isfinite(sm_scale) or sm_scale <= 0:
        raise ValueError(f"sm_scale must be a finite number > 0, got {sm_scale}")
    return float(sm_scale)


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


# ---------------------------------------------------------------- masks


def _causal(rows: Tensor, seq_len: int) -> Tensor:
    """(R, T) bool: key s is at or before query position rows[i]."""
    keys = torch.arange(seq_len, device=rows.device)
    return keys[None, :] <= rows[:, None]


def hash_mask(
    q_hash: Tensor, k_hash: Tensor, rows: Tensor | None = None, n_buckets: int | None = None
) -> Tensor:
    """allowed[b, h, i, s] = s <= rows[i] and q_hash[b, rows[i], h] == k_hash[b, s, h],
    and, with `n_buckets`, both ids in [0, n_buckets)."""
    _check_pair("q_hash", q_hash, "k_hash", k_hash, want_bool=False)
    seq_len = q_hash.shape[1]
    rows = _resolve_rows(rows, seq_len, q_hash.device)
    q_ids = q_hash[:, rows, :].permute(0, 2, 1)  # (B, H, R)
    k_ids = k_hash.permute(0, 2, 1)  # (B, H, T)
    same_bucket = q_ids[..., :, None] == k_ids[..., None, :]
    if n_buckets is not None:
        q_in, k_in = ((ids >= 0) & (ids < n_buckets) for ids in (q_ids, k_ids))
        same_bucket &= q_in[..., :, None] & k_in[..., None, :]
    return same_bucket & _causal(rows, seq_len)


def qk_mask(q_keep: Tensor, k_keep: Tensor, rows: Tensor | None = None) -> Tensor:
    """allowed[b, h, i, s] = s <= rows[i] and q_keep[b, rows[i], h] and k_keep[b, s, h]."""
    _check_pair("q_keep", q_keep, "k_keep", k_keep, want_bool=True)
    seq_len = q_keep.shape[1]
    rows = _resolve_rows(rows, seq_len, q_keep.device)
    q_kept = q_keep[:, rows, :].permute(0, 2, 1)  # (B, H, R)
    k_kept = k_keep.permute(0, 2, 1)  # (B, H, T)
    both_kept = q_kept[..., :, None] & k_kept[..., None, :]
    return both_kept & _causal(rows, seq_len)


# ---------------------------------------------------------------- attention


def _masked_probs(scores: Tensor, mask: Tensor) -> Tensor:
    """Row softmax over allowed entries; disallowed entries and fully masked rows give 0.

    Fully masked rows get finite dummy scores before the softmax so neither the value nor the
    autograd gradient ever sees exp(-inf - -inf) = NaN; the final `where` zeroes them.
    """
    row_has_key = mask.any(dim=-1, keepdim=True)
    safe = torch.where(mask, scores, float("-inf"))
    safe = torch.where(row_has_key, safe, torch.zeros((), dtype=scores.dtype, device=scores.device))
    probs = torch.softmax(safe, dim=-1)
    return torch.where(mask, probs, torch.zeros((), dtype=probs.dtype, device=probs.device))


def masked_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, sm_scale: float | None = None
) -> Tensor:
    """softmax(mask(q k^T * scale)) v, (B, R, H, D), float32 (float64 for float64 inputs).

    q: (B, R, H, D) holds the R query rows that `mask` (B, H, R, T) describes; k, v: (B, T, H, D).
    Differentiable through autograd.
    """
    _check_qkv(q, k, v, q_rows_may_differ=True)
    b, t, h, d = k.shape
    r = q.shape[1]
    if mask.dtype != torch.bool or tuple(mask.shape) != (b, h, r, t):
        raise ValueError(
            f"mask must be bool of shape (B, H, R, T) = {(b, h, r, t)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    scale = _resolve_scale(sm_scale, d)
    dtype = _compute_dtype(q, k, v)
    qf, kf, vf = q.to(dtype), k.to(dtype), v.to(dtype)
    scores = torch.einsum("brhd,bthd->bhrt", qf, kf) * scale
    probs = _masked_probs(scores, mask.to(scores.device))
    return torch.einsum("bhrt,bthd->brhd", probs, vf)


def hash_sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_hash: Tensor,
    k_hash: Tensor,
    sm_scale: float | None = None,
    rows: Tensor | None = None,
    n_buckets: int | None = None,
) -> Tensor:
    """Hash-sparse causal attention for query rows `rows` (all when None): (B, R, H, D)."""
    _check_qkv(q, k, v, q_rows_may_differ=False)
    rows = _resolve_rows(rows, q.shape[1], q.device)
    mask = hash_mask(q_hash, k_hash, rows, n_buckets)
    return masked_attention(q[:, rows], k, v, mask, sm_scale)


def qk_sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_keep: Tensor,
    k_keep: Tensor,
    sm_scale: float | None = None,
    rows: Tensor | None = None,
) -> Tensor:
    """QK-sparse causal attention for query rows `rows` (all when None): (B, R, H, D)."""
    _check_qkv(q, k, v, q_rows_may_differ=False)
    rows = _resolve_rows(rows, q.shape[1], q.device)
    mask = qk_mask(q_keep, k_keep, rows)
    return masked_attention(q[:, rows], k, v, mask, sm_scale)


# ---------------------------------------------------------------- exact gradients, chunked


@torch.no_grad()
def masked_attention_grads(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    do: Tensor,
    mask_fn: MaskFn,
    sm_scale: float | None = None,
    chunk: int = 512,
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact (dq, dk, dv) of masked attention for upstream gradient `do`, chunk rows at a time.

    mask_fn(rows) -> (B, H, R, T) bool for the 1-D LongTensor of query positions `rows`.
    Memory is O(chunk * T) per (batch, head): no T x T tensor is built.
    """
    _check_qkv(q, k, v, q_rows_may_differ=False)
    if do.shape != q.shape:
        raise ValueError(f"do must have q's shape {tuple(q.shape)}, got {tuple(do.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    b, t, h, d = q.shape
    scale = _resolve_scale(sm_scale, d)
    dtype = _compute_dtype(q, k, v, do)
    qf, kf, vf, dof = (x.to(dtype) for x in (q, k, v, do))
    dq = torch.zeros_like(qf)
    dk = torch.zeros_like(kf)
    dv = torch.zeros_like(vf)
    for start in range(0, t, chunk):
        stop = min(start + chunk, t)
        rows = torch.arange(start, stop, device=q.device)
        mask = mask_fn(rows)
        if mask.dtype != torch.bool or tuple(mask.shape) != (b, h, stop - start, t):
            raise ValueError(
                f"mask_fn must return bool (B, H, R, T) = {(b, h, stop - start, t)}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        # Causality: rows < stop never see keys >= stop, so only keys [0, stop) take part.
        mask = mask[..., :stop]
        k_vis, v_vis = kf[:, :stop], vf[:, :stop]
        q_c, do_c = qf[:, start:stop], dof[:, start:stop]
        scores = torch.einsum("brhd,bthd->bhrt", q_c, k_vis) * scale
        probs = _masked_probs(scores, mask)
        dv[:, :stop] += torch.einsum("bhrt,brhd->bthd", probs, do_c)
        dprobs = torch.einsum("brhd,bthd->bhrt", do_c, v_vis)
        delta = (probs * dprobs).sum(dim=-1, keepdim=True)
        dscores = probs * (dprobs - delta)
        dq[:, start:stop] = scale * torch.einsum("bhrt,bthd->brhd", dscores, k_vis)
        dk[:, :stop] += scale * torch.einsum("bhrt,brhd->bthd", dscores, q_c)
    return dq, dk, dv


def hash_sparse_attention_grads(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_hash: Tensor,
    k_hash: Tensor,
    do: Tensor,
    sm_scale: float | None = None,
    chunk: int = 512,
    n_buckets: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact (dq, dk, dv) of hash-sparse attention, O(chunk * T) memory."""
    _check_pair("q_hash", q_hash, "k_hash", k_hash, want_bool=False)
    return masked_attention_grads(
        q, k, v, do, lambda rows: hash_mask(q_hash, k_hash, rows, n_buckets), sm_scale, chunk
    )


def qk_sparse_attention_grads(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_keep: Tensor,
    k_keep: Tensor,
    do: Tensor,
    sm_scale: float | None = None,
    chunk: int = 512,
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact (dq, dk, dv) of QK-sparse attention, O(chunk * T) memory."""
    _check_pair("q_keep", q_keep, "k_keep", k_keep, want_bool=True)
    return masked_attention_grads(
        q, k, v, do, lambda rows: qk_mask(q_keep, k_keep, rows), sm_scale, chunk
    )

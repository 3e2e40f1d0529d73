"""FLOP counts, TFLOP/s and the exact density of a sparsity pattern.

FlashAttention's convention for dense causal attention: fwd = 4*B*H*T*T*D / 2, bwd = 2.5 * fwd.
Density = allowed pairs / causal pairs, counted exactly from the masks without any T x T tensor:
O(T log T) per (batch, head) for buckets (searchsorted on sorted keys), O(T) for keep masks.
"""

from __future__ import annotations

import torch
from torch import Tensor

MODE_FLOP_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}


def dense_causal_flops(batch: int, heads: int, seq_len: int, head_dim: int, mode: str) -> float:
    """FLOPs of dense causal attention for `mode`."""
    fwd = 4.0 * batch * heads * seq_len * seq_len * head_dim / 2.0
    return fwd * MODE_FLOP_FACTOR[mode]


def tflops(flops: float, ms: float | None) -> float | None:
    """TFLOP/s for `flops` done in `ms` milliseconds; None when there is no time."""
    if ms is None or ms <= 0:
        return None
    return flops / (ms * 1e-3) / 1e12


def _causal_pairs(seq_len: int) -> int:
    return seq_len * (seq_len + 1) // 2


def hash_allowed_pairs(q_hash: Tensor, k_hash: Tensor) -> int:
    """Pairs (t, s) with s <= t and q_hash[b,t,h] == k_hash[b,s,h], summed over b and h."""
    _, t, _ = q_hash.shape
    # Composite key bucket*T + position is monotone in (bucket, position): the keys a query sees
    # are those in [bucket*T, bucket*T + t] of the sorted composite keys.
    pos = torch.arange(t, device=q_hash.device, dtype=torch.int64)[None, :, None]
    k_comp = (k_hash.to(torch.int64) * t + pos).permute(0, 2, 1).contiguous()  # (B, H, T)
    q_bucket = (q_hash.to(torch.int64) * t).permute(0, 2, 1).contiguous()
    q_comp = q_bucket + pos.permute(0, 2, 1)
    k_sorted, _ = torch.sort(k_comp, dim=-1)
    hi = torch.searchsorted(k_sorted, q_comp, right=True)
    lo = torch.searchsorted(k_sorted, q_bucket, right=False)
    return int((hi - lo).sum().item())


def qk_allowed_pairs(q_keep: Tensor, k_keep: Tensor) -> int:
    """Pairs (t, s) with s <= t, q_keep[b,t,h] and k_keep[b,s,h], summed over b and h."""
    kept_keys_upto = torch.cumsum(k_keep.to(torch.int64), dim=1)  # (B, T, H)
    return int((kept_keys_upto * q_keep.to(torch.int64)).sum().item())


def density(
    *,
    q_hash: Tensor | None = None,
    k_hash: Tensor | None = None,
    q_keep: Tensor | None = None,
    k_keep: Tensor | None = None,
) -> float:
    """Allowed pairs / causal pairs for the pattern given (1.0 when there is none: dense)."""
    if q_hash is not None and k_hash is not None:
        b, t, h = q_hash.shape
        return hash_allowed_pairs(q_hash, k_hash) / (b * h * _causal_pairs(t))
    if q_keep is not None and k_keep is not None:
        b, t, h = q_keep.shape
        return qk_allowed_pairs(q_keep, k_keep) / (b * h * _causal_pairs(t))
    return 1.0

"""`adasplash`: AdaSplash (Goncalves et al. 2025, "AdaSplash: Adaptive Sparse Flash Attention"),
causal alpha-entmax attention in Triton with block masks built from the entmax support
(`pip install adasplash`; its 0.2 series runs AdaSplash-2 for causal alpha = 1.5).

alpha-entmax replaces softmax: p_i = [(alpha - 1) z_i - tau]_+ ^ (1 / (alpha - 1)), tau such
that the p_i sum to 1; pairs outside the support get exactly 0, which the kernel skips. So it
computes another function than softmax attention: the kind is `approximate`, the check compares
with our own dense float32 1.5-entmax reference (`entmax15`, exact by sorting, Peters et al.
2019), and `density` is the measured fraction of causal pairs inside the support (on sampled
query rows).

AdaSplash takes (B, H, T, D) contiguous tensors: the point's tensors are laid out so outside the
timing (views of (B, T, H, D) leaves with that memory order), so the timed call pays no copy.
Sequence lengths must be powers of two (without varlen), head dims 16..256. Training
(`model_attention`) uses the same call, `adasplash_attention`, through AdaSplash's own backward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable, optional_cuda_package
from scfa_bench.impls.registry import register

ALPHA = 1.5
INSTALL = "pip install 'scfa-bench[peers]' (or: pip install adasplash)"
DENSITY_ROWS = 128
_DENSITY_CHUNK = 8


def entmax15(scores: Tensor, dim: int = -1) -> Tensor:
    """1.5-entmax along `dim`, exact (sort-based), differentiable by autograd; -inf scores get 0.

    With x = scores / 2, p = [x - tau]_+^2, where tau comes from the largest support size k whose
    threshold tau_k = mean_k - sqrt((1 - k (meansq_k - mean_k^2)) / k) lies below the k-th
    largest x.
    """
    x = scores.transpose(dim, -1) / 2
    x = x - x.max(dim=-1, keepdim=True).values  # p is shift-invariant; keeps squares small
    finite = torch.isfinite(x)
    # Masked entries sit 2 below the maximum: outside any support (tau >= max - 1), finite.
    x = torch.where(finite, x, torch.full_like(x, -2.0)).clamp(min=-2.0)
    xs = torch.sort(x, dim=-1, descending=True).values
    k = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    mean = xs.cumsum(-1) / k
    meansq = (xs * xs).cumsum(-1) / k
    delta = ((1 - k * (meansq - mean * mean)) / k).clamp(min=0)
    tau_k = mean - delta.sqrt()
    support = (tau_k <= xs).sum(dim=-1, keepdim=True)
    tau = tau_k.gather(-1, support - 1)
    p = (x - tau).clamp(min=0) ** 2
    p = torch.where(finite, p, torch.zeros_like(p))
    return p.transpose(dim, -1)


def entmax_attention(q_rows: Tensor, k: Tensor, v: Tensor, rows: Tensor) -> Tensor:
    """Causal 1.5-entmax attention of query `rows` (q_rows: (B, R, H, D)), float32/float64."""
    work = torch.float64 if q_rows.dtype == torch.float64 else torch.float32
    scale = q_rows.shape[-1] ** -0.5
    scores = torch.einsum("brhd,bthd->bhrt", q_rows.to(work), k.to(work)) * scale
    causal = torch.arange(k.shape[1], device=k.device).view(1, -1) <= rows.view(-1, 1)
    scores = scores.masked_fill(~causal.to(k.device), float("-inf"))
    return torch.einsum("bhrt,bthd->brhd", entmax15(scores), v.to(work))


def entmax_density(inputs: AttentionInputs, n_rows: int = DENSITY_ROWS) -> float:
    """Support pairs / causal pairs, over `n_rows` evenly spaced query rows (all when fewer),
    a few rows at a time so that the (B, H, rows, T) scores stay small."""
    b, t, h, _ = inputs.q.shape
    rows = torch.unique(torch.linspace(0, t - 1, min(n_rows, t)).round().long())
    rows = rows.to(inputs.q.device)
    scale = inputs.q.shape[-1] ** -0.5
    kept = torch.zeros((), dtype=torch.float64, device=rows.device)
    with torch.no_grad():
        for part in rows.split(_DENSITY_CHUNK):
            scores = torch.einsum("brhd,bthd->bhrt", inputs.q[:, part].float(), inputs.k.float())
            causal = torch.arange(t, device=rows.device).view(1, -1) <= part.view(-1, 1)
            p = entmax15(scores.masked_fill(~causal, float("-inf")) * scale)
            kept += (p > 0).sum(dtype=torch.float64)
    causal_pairs = (rows + 1).sum().to(torch.float64) * b * h
    return float(kept / causal_pairs)


def check_seq_len(t: int) -> None:
    if t & (t - 1):
        raise ImplUnavailable(f"AdaSplash needs a power-of-two sequence length, not {t}")


def adasplash_bhtd(qt: Tensor, kt: Tensor, vt: Tensor) -> Tensor:
    """AdaSplash's causal 1.5-entmax call on contiguous (B, H, T, D) tensors."""
    from adasplash import adasplash

    return adasplash(qt, kt, vt, alpha=ALPHA, is_causal=True)


def adasplash_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """(B, T, H, D) -> (B, T, H, D) through `adasplash_bhtd`, differentiable by AdaSplash's own
    backward (a model's q, k, v are copied into its layout)."""
    check_seq_len(q.shape[1])
    qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
    return adasplash_bhtd(qt, kt, vt).transpose(1, 2)


def _bhtd_leaf(x: Tensor) -> Tensor:
    """A (B, T, H, D) leaf whose memory is (B, H, T, D) contiguous."""
    return x.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(x.requires_grad)


@register(
    name="adasplash",
    pattern="dense",
    devices=("cuda",),
    dtypes=("fp16", "bf16"),
    head_dims=(16, 32, 64, 128, 256),
    description="AdaSplash-2 (approximate): causal 1.5-entmax attention, adaptive block masks",
)
class AdaSplash:
    kind = "approximate"

    def available(self, device: str) -> tuple[bool, str]:
        if device != "cuda":
            return False, "AdaSplash runs on CUDA only"
        return optional_cuda_package("adasplash", "AdaSplash", INSTALL)

    def effective_inputs(self, inputs: AttentionInputs) -> AttentionInputs:
        check_seq_len(inputs.q.shape[1])
        q, k, v = (_bhtd_leaf(x) for x in inputs.leaves)
        return replace(inputs, q=q, k=k, v=v, reference_attention=entmax_attention)

    def measured_density(self, inputs: AttentionInputs) -> float:
        return entmax_density(inputs)

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        qt, kt, vt = (x.transpose(1, 2) for x in inputs.leaves)  # contiguous (B, H, T, D)
        return lambda: adasplash_bhtd(qt, kt, vt).transpose(1, 2)

    def model_available(self, device: str) -> tuple[bool, str]:
        return self.available(device)

    def model_attention(self, device: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """A differentiable (B, T, H, D) attention for one model layer."""
        return adasplash_attention

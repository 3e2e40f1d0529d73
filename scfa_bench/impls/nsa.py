"""`nsa_*`: Native Sparse Attention (NSA; Yuan et al. 2025, DeepSeek) through fla-core's Triton
kernels (`fla.ops.nsa.parallel_nsa`; `pip install 'scfa-bench[peers]'`).

NSA is grouped-query attention: `G` query heads share one key/value head, and fla-core needs `G` a
power of two and at least 16. Here G = 16: a point with H query heads uses the keys and values of
heads 0, 16, 32, ... (H / 16 KV heads), so every point's heads must be a multiple of 16.

Per query, two branches, mixed by gates (fixed at 0.5 each here; a model learns them):
* compression: attention over the mean key / value of each block of `block_size` positions that
  lies wholly in the past;
* selection: exact attention over the keys of `block_counts` blocks chosen by the compressed
  attention's probabilities (summed over the group), the first, the previous and the own block
  always chosen, causal inside.
The sliding-window branch needs the CUDA-built `flash_attn` and is left out (window 0).

The kind is `approximate`. The check compares with our own float32 reference of the two branches
(`nsa_reference`) given the blocks fla-core chose on the same inputs; `density` is the fraction of
causal (query, key) pairs inside the chosen blocks (the compressed branch's block means are not
counted as pairs). Sequence lengths must be multiples of `block_size`.

For training (`model_attention`), `nsa_attention` makes the same `parallel_nsa` call on a model's
(B, T, H, D) q, k, v, with the KV heads sliced out of k and v inside autograd (every 16th head, as
for a point; the other heads' keys and values are unused) and the gates fixed at 0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable, optional_cuda_package
from scfa_bench.impls.registry import register

GROUP = 16
GATE = 0.5
INSTALL = "pip install 'scfa-bench[peers]' (or: pip install fla-core einops)"


def check_shape(t: int, heads: int, block_size: int) -> None:
    if heads % GROUP:
        raise ImplUnavailable(f"NSA needs a multiple of {GROUP} query heads, not {heads}")
    if t % block_size:
        raise ImplUnavailable(f"NSA needs T a multiple of {block_size}, not {t}")


def kv_heads(x: Tensor) -> Tensor:
    """The KV heads of (B, T, H, D) keys or values: heads 0, GROUP, 2 GROUP, ..., contiguous."""
    return x[:, :, ::GROUP].contiguous()


def gated_nsa(
    q: Tensor, k: Tensor, v: Tensor, gate: Tensor, block_counts: int, block_size: int
) -> Tensor:
    """fla-core's `parallel_nsa`: q (B, T, HQ, D), k and v (B, T, HQ / GROUP, D), both branches
    weighted by `gate` (B, T, HQ), no sliding window."""
    from fla.ops.nsa import parallel_nsa

    return parallel_nsa(
        q, k, v, g_cmp=gate, g_slc=gate, block_counts=block_counts, block_size=block_size
    )


def nsa_attention(q: Tensor, k: Tensor, v: Tensor, block_counts: int, block_size: int) -> Tensor:
    """(B, T, HQ, D) -> (B, T, HQ, D), differentiable in q, k and v (gradients reach the KV heads
    only)."""
    check_shape(q.shape[1], q.shape[2], block_size)
    gate = torch.full(q.shape[:3], GATE, device=q.device, dtype=q.dtype)
    return gated_nsa(q.contiguous(), kv_heads(k), kv_heads(v), gate, block_counts, block_size)


def selection_mask(block_indices: Tensor, block_size: int, group: int, rows: Tensor) -> Tensor:
    """(B, HQ, R, T) bool: key s is in a block chosen for query row t (of its KV head) and s <= t.

    block_indices: (B, T, H_kv, S) int64, -1 for an empty slot."""
    t = block_indices.shape[1]
    rows = rows.to(block_indices.device)
    chosen = block_indices[:, rows].permute(0, 2, 1, 3)  # (B, H_kv, R, S)
    key_block = torch.arange(t, device=rows.device) // block_size
    hit = (chosen.unsqueeze(-1) == key_block.view(1, 1, 1, 1, -1)).any(dim=-2)
    causal = torch.arange(t, device=rows.device).view(1, -1) <= rows.view(-1, 1)
    return (hit & causal).repeat_interleave(group, dim=1)


def selection_density(block_indices: Tensor, block_size: int) -> float:
    """Pairs inside the chosen blocks (causal) / causal pairs, over every query and KV head."""
    b, t, h_kv, _ = block_indices.shape
    pos = torch.arange(t, device=block_indices.device).view(1, t, 1, 1)
    # distinct chosen blocks only: an index chosen twice counts once
    sorted_idx = torch.sort(block_indices, dim=-1).values
    first = torch.ones_like(sorted_idx, dtype=torch.bool)
    first[..., 1:] = sorted_idx[..., 1:] != sorted_idx[..., :-1]
    start = sorted_idx * block_size
    seen = (pos - start + 1).clamp(min=0, max=block_size)
    seen = torch.where((sorted_idx >= 0) & first, seen, torch.zeros_like(seen))
    return float(seen.sum(dtype=torch.float64) / (b * h_kv * t * (t + 1) / 2))


def nsa_reference(
    block_indices: Tensor, block_size: int, gate: float = GATE
) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
    """(q rows (B, R, HQ, D), k (B, T, H_kv, D), v, rows) -> gated compression + selection
    output of those rows, float32, differentiable."""
    from scfa_kernels import reference

    def attend(q_rows: Tensor, k: Tensor, v: Tensor, rows: Tensor) -> Tensor:
        b, t, h_kv, d = k.shape
        group = q_rows.shape[2] // h_kv
        rows = rows.to(k.device)
        k_rep, v_rep = (x.float().repeat_interleave(group, dim=2) for x in (k, v))
        mask = selection_mask(block_indices, block_size, group, rows)
        selected = reference.masked_attention(q_rows.float(), k_rep, v_rep, mask)
        n_blocks = t // block_size
        k_cmp, v_cmp = (
            x.float().view(b, n_blocks, block_size, h_kv, d).mean(dim=2) for x in (k, v)
        )
        k_cmp, v_cmp = (x.repeat_interleave(group, dim=2) for x in (k_cmp, v_cmp))
        whole = (torch.arange(n_blocks, device=k.device) + 1) * block_size - 1
        visible = (whole.view(1, -1) <= rows.view(-1, 1)).expand(b, q_rows.shape[2], -1, -1)
        compressed = reference.masked_attention(q_rows.float(), k_cmp, v_cmp, visible)
        return gate * selected + gate * compressed

    return attend


class _Nsa:
    kind = "approximate"
    block_size = 64
    block_counts = 16

    def available(self, device: str) -> tuple[bool, str]:
        if device != "cuda":
            return False, "fla-core's NSA runs on CUDA only"
        return optional_cuda_package("fla.ops.nsa", "fla-core's NSA", INSTALL)

    def _kv_heads(self, inputs: AttentionInputs) -> AttentionInputs:
        _, t, h, _ = inputs.q.shape
        check_shape(t, h, self.block_size)
        k, v = (kv_heads(x.detach()).requires_grad_(x.requires_grad) for x in (inputs.k, inputs.v))
        return replace(inputs, k=k, v=v)

    def choose_blocks(self, q: Tensor, k: Tensor) -> Tensor:
        """fla-core's own choice: (B, T, H_kv, S) block indices from the compressed branch."""
        from fla.ops.nsa.compression import parallel_nsa_compression
        from fla.ops.nsa.parallel import parallel_nsa_topk
        from fla.ops.utils.pooling import mean_pooling

        scale = q.shape[-1] ** -0.5
        with torch.no_grad():
            k_cmp = mean_pooling(k, self.block_size, None)
            # Only the log-sum-exp of the compressed scores feeds the choice: any values do.
            _, lse = parallel_nsa_compression(
                q=q, k=k_cmp, v=k_cmp, TK=k.shape[1], block_size=self.block_size, scale=scale
            )
            return parallel_nsa_topk(
                q=q,
                k=k_cmp,
                lse=lse,
                TK=k.shape[1],
                block_counts=self.block_counts,
                block_size=self.block_size,
                scale=scale,
            )

    def effective_inputs(self, inputs: AttentionInputs) -> AttentionInputs:
        grouped = self._kv_heads(inputs)
        chosen = self.choose_blocks(grouped.q, grouped.k)
        return replace(grouped, reference_attention=nsa_reference(chosen, self.block_size))

    def _grouped(self, inputs: AttentionInputs) -> AttentionInputs:
        """`inputs` with KV heads (already so after effective_inputs; a model's are not)."""
        return self._kv_heads(inputs) if inputs.k.shape[2] == inputs.q.shape[2] else inputs

    def measured_density(self, inputs: AttentionInputs) -> float:
        grouped = self._grouped(inputs)
        return selection_density(self.choose_blocks(grouped.q, grouped.k), self.block_size)

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        q, k, v = self._grouped(inputs).leaves
        gate = torch.full(q.shape[:3], GATE, device=q.device, dtype=q.dtype)
        counts, size = self.block_counts, self.block_size
        return lambda: gated_nsa(q, k, v, gate, counts, size)

    def model_available(self, device: str) -> tuple[bool, str]:
        return self.available(device)

    def model_attention(self, device: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """A differentiable (B, T, H, D) attention for one model layer."""
        return partial(nsa_attention, block_counts=self.block_counts, block_size=self.block_size)


_DESC = "NSA (fla-core, approximate): compression + {s} chosen blocks of 64, 16 q heads per KV"
# What every NSA variant declares: CUDA, half precision, grouped heads (16 per KV head).
_DECLARED = {
    "pattern": "dense",
    "devices": ("cuda",),
    "dtypes": ("fp16", "bf16"),
    "max_head_dim": 256,
    "heads_multiple": GROUP,
}


@register(name="nsa", description=_DESC.format(s=16), **_DECLARED)
class Nsa(_Nsa):
    block_counts = 16


@register(name="nsa_s4", description=_DESC.format(s=4), **_DECLARED)
class NsaFewBlocks(_Nsa):
    block_counts = 4

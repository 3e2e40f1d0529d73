"""`moba_*`: Mixture of Block Attention (MoBA; Lu et al. 2025, "MoBA: Mixture of Block
Attention for Long-Context LLMs"), written as a FlexAttention block mask.

Keys are cut into blocks of `block` positions. Each query attends, causally, the keys of its own
block and of the `top_k` earlier blocks whose mean key scores highest against it
(`q . mean(k_block)`, float32, per query token and head; no gradient through the choice, as in
MoBA's gating). A query with fewer than `top_k` earlier blocks takes all of them.

MoBA's own code gathers the chosen blocks for a varlen FlashAttention call (it needs the CUDA-built
`flash_attn`); this is what a user without it would write: the choice as a (B, H, T, top_k) index
tensor, a FlexAttention `BlockMask` built from it in O(T * top_k) (a 128-query tile visits the
union of its queries' blocks) and a `mask_mod` that keeps each query to its own choice. Scores,
choice and mask are rebuilt inside every timed call, as a training step must.

The kind is `approximate`: the check compares with the dense masked reference over the mask
the choice gives (`moba_mask`), and `density` is measured from that choice.

For training (`model_attention`), `MobaFlex` is the same FlexAttention call, differentiable (no
gradient flows through the choice). FlexAttention has no backward on the CPU, so there the model
gets `moba_reference_attention`: the same function through the dense masked reference (slow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable
from scfa_bench.impls.flex import _compiled_flex
from scfa_bench.impls.flex_sparse import flex_available
from scfa_bench.impls.registry import register

FLEX_BLOCK = 128
FlexCall = Callable[..., Tensor]


def block_means(k: Tensor, block: int) -> Tensor:
    """(B, T, H, D) keys -> (B, n_blocks, H, D) float32 mean key of each block (the last block
    averages the positions it has)."""
    b, t, h, d = k.shape
    n_blocks = -(-t // block)
    padded = torch.zeros((b, n_blocks * block, h, d), device=k.device, dtype=torch.float32)
    padded[:, :t] = k.detach().float()
    sums = padded.view(b, n_blocks, block, h, d).sum(dim=2)
    counts = torch.full((n_blocks,), float(block), device=k.device)
    counts[-1] = t - (n_blocks - 1) * block
    return sums / counts.view(1, -1, 1, 1)


def moba_choice(q: Tensor, k: Tensor, block: int, top_k: int) -> Tensor:
    """(B, H, T, top_k) int64: the earlier key blocks each query chooses, best first; -1 where a
    query has fewer than top_k earlier blocks."""
    b, t, h, _ = q.shape
    means = block_means(k, block)
    n_blocks = means.shape[1]
    scores = torch.einsum("bthd,bnhd->bhtn", q.detach().float(), means)
    own = torch.arange(t, device=q.device) // block
    earlier = torch.arange(n_blocks, device=q.device).view(1, -1) < own.view(-1, 1)
    scores = scores.masked_fill(~earlier, float("-inf"))
    picks = min(top_k, n_blocks)
    values, index = scores.topk(picks, dim=-1)
    index = index.masked_fill(values == float("-inf"), -1)
    if picks < top_k:
        pad = torch.full((b, h, t, top_k - picks), -1, device=q.device, dtype=index.dtype)
        index = torch.cat([index, pad], dim=-1)
    return index


def moba_mask(choice: Tensor, block: int, rows: Tensor) -> Tensor:
    """(B, H, R, T) bool: whether query `rows` attend each key under `choice`."""
    t = choice.shape[2]
    rows = rows.to(choice.device)
    key_block = torch.arange(t, device=choice.device) // block
    chosen = choice[:, :, rows].unsqueeze(-1) == key_block.view(1, 1, 1, 1, -1)
    own = (rows // block).view(-1, 1) == key_block.view(1, -1)
    causal = torch.arange(t, device=choice.device).view(1, -1) <= rows.view(-1, 1)
    return (chosen.any(dim=-2) | own) & causal


def moba_density(choice: Tensor, block: int) -> float:
    """Attended pairs / causal pairs: own block up to the query, plus every chosen (earlier,
    hence full) block."""
    b, h, t, _ = choice.shape
    pos = torch.arange(t, device=choice.device)
    own = (pos % block + 1).to(torch.float64).sum() * b * h
    chosen = (choice >= 0).sum(dtype=torch.float64) * block
    return float((own + chosen) / (b * h * t * (t + 1) / 2))


def tile_blocks(choice: Tensor, block: int, flex_block: int = FLEX_BLOCK) -> Tensor:
    """(B, H, n_tiles, n_tiles) bool: the key tiles each query tile of `flex_block` rows must
    visit: the union of its queries' chosen blocks, its own block up to the diagonal."""
    b, h, t, top_k = choice.shape
    n_tiles = -(-t // flex_block)
    n_blocks = -(-t // block)
    padded = torch.full((b, h, n_tiles * flex_block, top_k), -1, device=choice.device)
    padded[:, :, :t] = choice
    per_tile = padded.view(b, h, n_tiles, flex_block * top_k) + 1  # 0: no choice
    chosen = torch.zeros((b, h, n_tiles, n_blocks + 1), dtype=torch.bool, device=choice.device)
    chosen.scatter_(-1, per_tile, True)
    tiles_per_block = block // flex_block
    visit = chosen[..., 1:].repeat_interleave(tiles_per_block, dim=-1)[..., :n_tiles]
    q_tile = torch.arange(n_tiles, device=choice.device).view(-1, 1)
    k_tile = torch.arange(n_tiles, device=choice.device).view(1, -1)
    own = (k_tile * flex_block // block == q_tile * flex_block // block) & (k_tile <= q_tile)
    return visit | own


def _block_mask(choice: Tensor, block: int, seq_len: int) -> object:
    from torch.nn.attention.flex_attention import BlockMask

    visit = tile_blocks(choice, block)
    counts = visit.sum(dim=-1, dtype=torch.int32)
    order = torch.argsort((~visit).to(torch.int8), dim=-1, stable=True).to(torch.int32)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        key_block = kv_idx // block
        ok = key_block == q_idx // block
        for j in range(choice.shape[-1]):
            ok = ok | (choice[b, h, q_idx, j] == key_block)
        return ok & (kv_idx <= q_idx)

    return BlockMask.from_kv_blocks(
        counts, order, BLOCK_SIZE=FLEX_BLOCK, mask_mod=mask_mod, seq_lengths=(seq_len, seq_len)
    )


def moba_reference_attention(q: Tensor, k: Tensor, v: Tensor, block: int, top_k: int) -> Tensor:
    """MoBA by its definition, (B, T, H, D): the dense masked float32 reference over the mask
    of the choice, differentiable, on any device (O(T^2) memory: small shapes only)."""
    from scfa_kernels import reference

    choice = moba_choice(q, k, block, top_k)
    mask = moba_mask(choice, block, torch.arange(q.shape[1], device=q.device))
    return reference.masked_attention(q, k, v, mask).to(q.dtype)


class MobaFlex:
    """MoBA through FlexAttention on (B, T, H, D) q, k, v; differentiable in q, k and v.

    One choice buffer per shape, refilled in place at every call: the mask_mod closes over the
    same tensor, so a compiled `flex` is not rebuilt per call. FlexAttention's backward reads
    that buffer again, so a call's backward must run before the next call of the same shape
    (true of one model layer: one MobaFlex per layer)."""

    def __init__(self, block: int, top_k: int, flex: FlexCall) -> None:
        if block % FLEX_BLOCK:
            raise ImplUnavailable(f"MoBA block {block} is not a multiple of {FLEX_BLOCK}")
        self.block, self.top_k, self.flex = block, top_k, flex
        self._choice: dict[tuple[int, ...], Tensor] = {}

    def __call__(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, t, h, _ = q.shape
        choice = self._choice.get((b, t, h))
        if choice is None:
            choice = torch.full((b, h, t, self.top_k), -1, dtype=torch.int64, device=q.device)
            self._choice[(b, t, h)] = choice
        choice.copy_(moba_choice(q, k, self.block, self.top_k))
        block_mask = _block_mask(choice, self.block, t)
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        return self.flex(qt, kt, vt, block_mask=block_mask).transpose(1, 2)


class _Moba:
    kind = "approximate"
    block = 512
    top_k = 3

    def available(self, device: str) -> tuple[bool, str]:
        return flex_available(device)

    def _check_shape(self, inputs: AttentionInputs) -> None:
        if self.block % FLEX_BLOCK:
            raise ImplUnavailable(f"MoBA block {self.block} is not a multiple of {FLEX_BLOCK}")

    def effective_inputs(self, inputs: AttentionInputs) -> AttentionInputs:
        """The same tensors, checked against the mask of the choice they give."""
        self._check_shape(inputs)
        choice = moba_choice(inputs.q, inputs.k, self.block, self.top_k)
        block = self.block
        return replace(inputs, reference_mask=lambda rows: moba_mask(choice, block, rows))

    def measured_density(self, inputs: AttentionInputs) -> float:
        return moba_density(moba_choice(inputs.q, inputs.k, self.block, self.top_k), self.block)

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        self._check_shape(inputs)
        moba = MobaFlex(self.block, self.top_k, _compiled_flex())
        q, k, v = inputs.leaves
        return lambda: moba(q, k, v)

    def model_available(self, device: str) -> tuple[bool, str]:
        """Training runs on the CPU too, through the reference."""
        return (True, "") if device == "cpu" else flex_available(device)

    def model_attention(self, device: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """A differentiable (B, T, H, D) attention for one model layer."""
        if device == "cpu":
            return partial(moba_reference_attention, block=self.block, top_k=self.top_k)
        return MobaFlex(self.block, self.top_k, _compiled_flex())


_DESC = "MoBA (approximate): own block + top-{k} earlier blocks of {b} by mean key, FlexAttention"


@register(name="moba", pattern="dense", description=_DESC.format(k=3, b=512))
class Moba(_Moba):
    block, top_k = 512, 3


@register(name="moba_k2_b128", pattern="dense", description=_DESC.format(k=2, b=128))
class MobaSmallBlocks(_Moba):
    block, top_k = 128, 2

"""`flex_hash_ranges` / `flex_qk_ranges`: FlexAttention in bucket-sorted order, the BlockMask
built in O(T log T) from key ranges (see `flex_sparse` for the mask_mod variants).

FlexAttention on original positions cannot skip any block of a random hash pattern (every
128 x 128 block holds some same-bucket pair). This variant sorts queries and keys of each
(batch, head) by (bucket, position), as SCFA's plan does, gathers q, k, v into that order,
and builds the `BlockMask` directly with `BlockMask.from_kv_blocks` from per-block key ranges
found by binary search: nothing of size T x T. In sorted order the keys a query block may see
are one contiguous range (from the start of its first bucket to the last key not after its
last query); blocks inside the range whose pairs are all allowed are marked full (no mask_mod
call). The output is scattered back to original positions. Exact: the mask_mod still applies
"same bucket and causal on original positions" to every partial block. Sort, block ranges
and BlockMask are inside the timed call, under `record_function("mask_build")`; the gathers
and the scatter under `record_function("permute")`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs
from scfa_bench.impls.flex import _compiled_flex
from scfa_bench.impls.flex_sparse import (
    FLEX_BLOCK,
    MASK_BUILD_STAGE,
    PERMUTE_STAGE,
    MaskMod,
    flex_available,
    to_bht,
)
from scfa_bench.impls.registry import register

_RANGES = "FlexAttention (compiled) in bucket-sorted order, BlockMask from key ranges in the call"


@dataclass(frozen=True)
class SortedRows:
    """One side (queries or keys) of every (batch, head), sorted by (bucket, position)."""

    perm: Tensor  # (B, H, T) int64: original position of each sorted slot
    composite: Tensor  # (B, H, T) int64: bucket * T + position, ascending


def sort_rows(bucket: Tensor) -> SortedRows:
    """Sort (B, H, T) bucket ids by (bucket, position); composite keys are unique, so any sort
    is stable."""
    t = bucket.shape[-1]
    positions = torch.arange(t, device=bucket.device, dtype=torch.int64)
    composite, perm = torch.sort((bucket.to(torch.int64) * t + positions).contiguous(), dim=-1)
    return SortedRows(perm=perm, composite=composite)


@dataclass(frozen=True)
class BlockRanges:
    """`BlockMask.from_kv_blocks` arguments: per query block, partial and full key blocks."""

    kv_num_blocks: Tensor  # (B, H, n_q_blocks) int32
    kv_indices: Tensor  # (B, H, n_q_blocks, n_kv_blocks) int32
    full_kv_num_blocks: Tensor
    full_kv_indices: Tensor


def block_ranges(queries: SortedRows, keys: SortedRows, block: int = FLEX_BLOCK) -> BlockRanges:
    """Key blocks each query block of the sorted order must visit, partial and full.

    Query slot with composite c = bucket * T + t may see key slots whose composite lies in
    [bucket * T, c]. For a block of query slots (composites ascending from `first` to `last`)
    the union of those ranges lies inside [start of first's bucket, last]: found by binary
    search in the sorted key composites. Keys every query of the block may see (full): only
    when the block holds one bucket, from that bucket's start to the keys not after `first`.
    The last key block is never full when T is not a multiple of the block size.
    """
    t = queries.composite.shape[-1]
    n_blocks = -(-t // block)
    starts = torch.arange(n_blocks, device=queries.composite.device) * block
    ends = torch.clamp(starts + block, max=t) - 1
    first = queries.composite[..., starts]
    last = queries.composite[..., ends]
    first_bucket_start = (first // t) * t
    last_bucket_start = (last // t) * t

    search = lambda values, right: torch.searchsorted(keys.composite, values, right=right)
    lo = search(first_bucket_start, False)
    hi = search(last, True)
    one_bucket = first_bucket_start == last_bucket_start
    full_hi = torch.where(one_bucket, search(first, True), lo)  # full key slots: [lo, full_hi)

    # Block units: partial-or-full blocks [p0, p1), full ones [f0, f1) inside them.
    nonempty = hi > lo
    p0 = torch.where(nonempty, lo // block, 0)
    p1 = torch.where(nonempty, -(-hi // block), 0)
    f0 = -(-lo // block)
    f1 = torch.clamp(full_hi // block, max=t // block)
    has_full = nonempty & (f1 > f0)
    f0 = torch.where(has_full, f0, p1)
    f1 = torch.where(has_full, f1, p1)

    n_before = f0 - p0
    r = torch.arange(n_blocks, device=lo.device)
    partial_idx = torch.where(
        r < n_before[..., None], p0[..., None] + r, f1[..., None] + r - n_before[..., None]
    )
    full_idx = f0[..., None] + r
    clamp = lambda x: torch.clamp(x, 0, n_blocks - 1).to(torch.int32)
    return BlockRanges(
        kv_num_blocks=(n_before + p1 - f1).to(torch.int32),
        kv_indices=clamp(partial_idx),
        full_kv_num_blocks=(f1 - f0).to(torch.int32),
        full_kv_indices=clamp(full_idx),
    )


class SortedPattern:
    """Buckets and positions of the sorted slots, in buffers allocated once per shape.

    The mask_mod closes over these buffers and each call copies the new sort into them, so
    the compiled FlexAttention sees the same mask_mod object every call (a new closure per
    call could make dynamo recompile).
    """

    def __init__(self, shape: tuple[int, int, int], device) -> None:
        self.q_bucket, self.k_bucket, self.q_pos, self.k_pos = (
            torch.empty(shape, dtype=torch.int64, device=device) for _ in range(4)
        )
        q_bucket, k_bucket, q_pos, k_pos = self.q_bucket, self.k_bucket, self.q_pos, self.k_pos

        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            same = q_bucket[b, h, q_idx] == k_bucket[b, h, kv_idx]
            return same & (k_pos[b, h, kv_idx] <= q_pos[b, h, q_idx])

        self.mask_mod: MaskMod = mask_mod

    def block_mask(self, queries: SortedRows, keys: SortedRows, block: int = FLEX_BLOCK) -> object:
        """Copy the sort into the buffers; the BlockMask of the sorted pattern."""
        from torch.nn.attention.flex_attention import BlockMask

        t = queries.composite.shape[-1]
        torch.floor_divide(queries.composite, t, out=self.q_bucket)
        torch.floor_divide(keys.composite, t, out=self.k_bucket)
        self.q_pos.copy_(queries.perm)
        self.k_pos.copy_(keys.perm)
        ranges = block_ranges(queries, keys, block)
        return BlockMask.from_kv_blocks(
            ranges.kv_num_blocks,
            ranges.kv_indices,
            ranges.full_kv_num_blocks,
            ranges.full_kv_indices,
            BLOCK_SIZE=block,
            mask_mod=self.mask_mod,
            seq_lengths=(t, t),
        )


def qk_buckets(q_keep: Tensor, k_keep: Tensor) -> tuple[Tensor, Tensor]:
    """QK-sparse as buckets (as SCFA's plan): kept rows bucket 0, dropped queries 1, dropped
    keys 2, so dropped rows see nothing and are seen by nothing."""
    return torch.where(q_keep, 0, 1), torch.where(k_keep, 0, 2)


def _gather_rows(x: Tensor, perm: Tensor) -> Tensor:
    return x.gather(2, perm[..., None].expand(-1, -1, -1, x.shape[-1]))


def sorted_flex_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_bucket: Tensor,
    k_bucket: Tensor,
    flex: Callable[..., Tensor],
    pattern: SortedPattern | None = None,
    block: int = FLEX_BLOCK,
) -> Tensor:
    """Hash-sparse causal attention through FlexAttention in bucket-sorted order.

    q, k, v: (B, H, T, D); q_bucket, k_bucket: (B, H, T) integer. Returns (B, H, T, D) at
    original positions; a query that sees no key outputs 0 (FlexAttention's fully masked row).
    """
    if pattern is None:
        pattern = SortedPattern(tuple(q_bucket.shape), q.device)
    with torch.profiler.record_function(MASK_BUILD_STAGE):
        queries, keys = sort_rows(q_bucket), sort_rows(k_bucket)
        block_mask = pattern.block_mask(queries, keys, block)
    with torch.profiler.record_function(PERMUTE_STAGE):
        qs, ks, vs = (
            _gather_rows(q, queries.perm),
            _gather_rows(k, keys.perm),
            _gather_rows(v, keys.perm),
        )
    out_sorted = flex(qs, ks, vs, block_mask=block_mask)
    with torch.profiler.record_function(PERMUTE_STAGE):
        index = queries.perm[..., None].expand(-1, -1, -1, out_sorted.shape[-1])
        return torch.empty_like(out_sorted).scatter(2, index, out_sorted)


class _FlexRanges:
    """Bucket-sorted FlexAttention, BlockMask from key ranges, all inside the timed call."""

    pattern = ""

    def available(self, device: str) -> tuple[bool, str]:
        return flex_available(device)

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        if self.pattern == "hash":
            q_bucket, k_bucket = to_bht(inputs.q_hash, "q_hash"), to_bht(inputs.k_hash, "k_hash")
        else:
            q_bucket, k_bucket = qk_buckets(
                to_bht(inputs.q_keep, "q_keep"), to_bht(inputs.k_keep, "k_keep")
            )
        flex = _compiled_flex()
        pattern = SortedPattern(tuple(q_bucket.shape), inputs.q.device)
        qt, kt, vt = (x.transpose(1, 2) for x in inputs.leaves)
        return lambda: sorted_flex_attention(
            qt, kt, vt, q_bucket, k_bucket, flex, pattern
        ).transpose(1, 2)


@register(name="flex_hash_ranges", pattern="hash", description=f"{_RANGES}, bucket ids")
class FlexHashRanges(_FlexRanges):
    pattern = "hash"


@register(name="flex_qk_ranges", pattern="qk", description=f"{_RANGES}, keep masks")
class FlexQkRanges(_FlexRanges):
    pattern = "qk"

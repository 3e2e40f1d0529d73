"""FlexAttention over the sparse patterns: what a user would write instead of SCFA kernels.

Three ways to hand the pattern to FlexAttention (compiled like `flex_dense`):

* `flex_hash` / `flex_qk`: a `mask_mod` over the bucket ids (causal and same bucket) or keep
  masks (causal and both kept), the `BlockMask` built by `create_block_mask` inside the timed
  call, as a training step whose pattern changes every step must. `create_block_mask`
  evaluates the mask_mod on every (query, key) pair: O(T^2) work per call.
* `flex_hash_prebuilt` / `flex_qk_prebuilt`: the same, the mask built once outside the timing
  (the attention alone; a lower bound no dynamic-pattern user gets).
* `flex_hash_ranges` / `flex_qk_ranges` (module `flex_ranges`): FlexAttention in
  bucket-sorted order, the BlockMask built in O(T log T) from key ranges.

All of them are CUDA only: FlexAttention's compiled kernels do not run on the CPU
interpreter (its eager CPU path is used by the tests to check the range construction).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable
from scfa_bench.impls.flex import _compiled_flex
from scfa_bench.impls.registry import register

# FlexAttention's default (and, for its Triton kernels, fastest general) block size.
FLEX_BLOCK = 128
MASK_BUILD_STAGE = "mask_build"
PERMUTE_STAGE = "permute"

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def hash_mask_mod(q_hash: Tensor, k_hash: Tensor) -> MaskMod:
    """Causal and same bucket; q_hash, k_hash: (B, H, T) integer bucket ids."""

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (q_idx >= kv_idx) & (q_hash[b, h, q_idx] == k_hash[b, h, kv_idx])

    return mask_mod


def qk_mask_mod(q_keep: Tensor, k_keep: Tensor) -> MaskMod:
    """Causal, query kept and key kept; q_keep, k_keep: (B, H, T) bool."""

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (q_idx >= kv_idx) & q_keep[b, h, q_idx] & k_keep[b, h, kv_idx]

    return mask_mod


@cache
def _compiled_create_block_mask() -> Callable[..., object]:
    from torch.nn.attention.flex_attention import create_block_mask

    _compiled_flex()  # raises dynamo's cache limits before anything is compiled
    # Compiled, the mask_mod is fused into the block reduction: no (B, H, T, T) tensor.
    return torch.compile(create_block_mask, dynamic=False)


def build_block_mask(mask_mod: MaskMod, batch: int, heads: int, seq_len: int, device) -> object:
    """`create_block_mask` over the full (B, H, T, T) grid, compiled, as its docs recommend."""
    with torch.profiler.record_function(MASK_BUILD_STAGE):
        return _compiled_create_block_mask()(mask_mod, batch, heads, seq_len, seq_len, device)


# --- the registered implementations -------------------------------------------------------


def flex_available(device: str) -> tuple[bool, str]:
    if device != "cuda":
        return False, "FlexAttention is measured on CUDA only (its compiled kernels need a GPU)"
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    try:
        from torch.nn.attention.flex_attention import BlockMask, create_block_mask  # noqa: F401
    except ImportError as exc:
        return False, f"this torch has no FlexAttention: {exc}"
    if not hasattr(BlockMask, "from_kv_blocks"):
        return False, "this torch's BlockMask has no from_kv_blocks"
    return True, ""


def to_bht(x: Tensor | None, what: str) -> Tensor:
    if x is None:
        raise ImplUnavailable(f"the point has no {what}")
    return x.transpose(1, 2).contiguous()


class _FlexMaskMod:
    """mask_mod + create_block_mask; `build_in_call` says whether the timed call builds it."""

    pattern = ""
    build_in_call = True

    def available(self, device: str) -> tuple[bool, str]:
        return flex_available(device)

    def mask_mod(self, inputs: AttentionInputs) -> MaskMod:
        if self.pattern == "hash":
            return hash_mask_mod(to_bht(inputs.q_hash, "q_hash"), to_bht(inputs.k_hash, "k_hash"))
        return qk_mask_mod(to_bht(inputs.q_keep, "q_keep"), to_bht(inputs.k_keep, "k_keep"))

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        b, t, h, _ = inputs.q.shape
        mask_mod = self.mask_mod(inputs)  # one closure per point: no recompilation per call
        flex = _compiled_flex()
        qt, kt, vt = (x.transpose(1, 2) for x in inputs.leaves)
        device = inputs.q.device
        if self.build_in_call:
            return lambda: flex(
                qt, kt, vt, block_mask=build_block_mask(mask_mod, b, h, t, device)
            ).transpose(1, 2)
        block_mask = build_block_mask(mask_mod, b, h, t, device)
        return lambda: flex(qt, kt, vt, block_mask=block_mask).transpose(1, 2)


_CALL = "FlexAttention (compiled), BlockMask built in the timed call"
_ONCE = "FlexAttention (compiled), BlockMask built once outside the timing"


@register(name="flex_hash", pattern="hash", description=f"{_CALL}, mask_mod over bucket ids")
class FlexHash(_FlexMaskMod):
    pattern = "hash"


@register(name="flex_qk", pattern="qk", description=f"{_CALL}, mask_mod over keep masks")
class FlexQk(_FlexMaskMod):
    pattern = "qk"


@register(name="flex_hash_prebuilt", pattern="hash", description=f"{_ONCE}, bucket ids")
class FlexHashPrebuilt(_FlexMaskMod):
    pattern = "hash"
    build_in_call = False


@register(name="flex_qk_prebuilt", pattern="qk", description=f"{_ONCE}, keep masks")
class FlexQkPrebuilt(_FlexMaskMod):
    pattern = "qk"
    build_in_call = False

"""FlexAttention (torch.compile'd), dense causal; the block mask is built once per shape."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs
from scfa_bench.impls.registry import register


def _causal(batch: Tensor, head: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    return q_idx >= kv_idx


@cache
def _compiled_flex() -> Callable[..., Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    # One compiled graph per (shape, grad mode): a sweep needs more than dynamo's default
    # cache of 8, past which flex_attention silently falls back to eager, which builds the
    # full T x T score matrix (seen on an H100: a 192 GiB allocation at T=16384).
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    torch._dynamo.config.accumulated_cache_size_limit = max(
        torch._dynamo.config.accumulated_cache_size_limit, 1024
    )
    # The bwd mode replays backward with retain_graph=True, which donated buffers forbid.
    torch._functorch.config.donated_buffer = False
    return torch.compile(flex_attention, dynamic=False)


@register(
    name="flex_dense",
    pattern="dense",
    devices=("cuda",),
    description="FlexAttention (compiled Triton), dense causal, block mask built once",
)
class FlexDense:
    def available(self, device: str) -> tuple[bool, str]:
        if device != "cuda":
            return False, "FlexAttention is measured on CUDA only"
        if not torch.cuda.is_available():
            return False, "no CUDA device"
        try:
            from torch.nn.attention.flex_attention import create_block_mask  # noqa: F401
        except ImportError as exc:
            return False, f"this torch has no FlexAttention: {exc}"
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        from torch.nn.attention.flex_attention import create_block_mask

        _, t, _, _ = inputs.q.shape
        block_mask = create_block_mask(
            _causal, B=None, H=None, Q_LEN=t, KV_LEN=t, device=inputs.q.device
        )
        flex = _compiled_flex()
        qt, kt, vt = (x.transpose(1, 2) for x in inputs.leaves)
        return lambda: flex(qt, kt, vt, block_mask=block_mask).transpose(1, 2)

"""Our Triton kernels (`scfa_kernels`): hash-sparse and QK-sparse causal flash attention."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs
from scfa_bench.impls.registry import register

# The kernels' own limits; bf16 on the CPU is left out because `tl.dot` on bfloat16 is wrong
# under the Triton interpreter (triton-lang/triton#11584).
_SUPPORTS = {
    "devices": ("cuda", "cpu"),
    "dtypes": {"cuda": ("fp16", "bf16", "fp32"), "cpu": ("fp16", "fp32")},
    "head_dims": (16, 32, 64, 128),
}


def kernels_available(device: str, function: str) -> tuple[bool, str]:
    """The kernels run on CUDA, or on the CPU through Triton's interpreter."""
    if device == "cuda" and not torch.cuda.is_available():
        return False, "no CUDA device"
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return False, "CPU runs need TRITON_INTERPRET=1 (set before triton is imported)"
    try:
        import scfa_kernels
    except Exception as exc:
        return False, f"cannot import scfa_kernels: {type(exc).__name__}: {exc}"
    if not hasattr(scfa_kernels, function):
        return False, f"scfa_kernels has no {function}"
    return True, ""


@register(
    name="scfa_hash",
    pattern="hash",
    **_SUPPORTS,
    description="SCFA hash-sparse causal attention (Triton kernel)",
)
class ScfaHash:
    def available(self, device: str) -> tuple[bool, str]:
        return kernels_available(device, "hash_sparse_attention")

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        from scfa_kernels import hash_sparse_attention

        q, k, v, q_hash, k_hash = inputs.q, inputs.k, inputs.v, inputs.q_hash, inputs.k_hash
        # The point's bucket count: no synchronising read of the ids inside the timed call,
        # as in a training step (ids are generated in range, and checked by the harness).
        n_buckets = inputs.n_buckets
        return lambda: hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=n_buckets)


@register(
    name="scfa_qk",
    pattern="qk",
    **_SUPPORTS,
    description="SCFA QK-sparse causal attention (Triton kernel)",
)
class ScfaQk:
    def available(self, device: str) -> tuple[bool, str]:
        return kernels_available(device, "qk_sparse_attention")

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        from scfa_kernels import qk_sparse_attention

        q, k, v, q_keep, k_keep = inputs.q, inputs.k, inputs.v, inputs.q_keep, inputs.k_keep
        return lambda: qk_sparse_attention(q, k, v, q_keep, k_keep)

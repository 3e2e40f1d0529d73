"""Dense masked references (`scfa_kernels.reference`) as slow baselines: O(T^2) memory."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from scfa_bench.impls.base import AttentionInputs
from scfa_bench.impls.registry import register


def reference_available() -> tuple[bool, str]:
    try:
        from scfa_kernels import reference  # noqa: F401
    except Exception as exc:
        return False, f"cannot import scfa_kernels.reference: {type(exc).__name__}: {exc}"
    return True, ""


@register(
    name="naive_hash",
    pattern="hash",
    devices=("cuda", "cpu"),
    description="dense masked float32 reference, hash-sparse pattern",
)
class NaiveHash:
    def available(self, device: str) -> tuple[bool, str]:
        return reference_available()

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        from scfa_kernels import reference

        q, k, v, q_hash, k_hash = inputs.q, inputs.k, inputs.v, inputs.q_hash, inputs.k_hash
        return lambda: reference.hash_sparse_attention(q, k, v, q_hash, k_hash)


@register(
    name="naive_qk",
    pattern="qk",
    devices=("cuda", "cpu"),
    description="dense masked float32 reference, QK-sparse pattern",
)
class NaiveQk:
    def available(self, device: str) -> tuple[bool, str]:
        return reference_available()

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        from scfa_kernels import reference

        q, k, v, q_keep, k_keep = inputs.q, inputs.k, inputs.v, inputs.q_keep, inputs.k_keep
        return lambda: reference.qk_sparse_attention(q, k, v, q_keep, k_keep)

"""The per-layer attention functions the plugs hand to the model (see `e2e.attention`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from scfa_bench.e2e.model import AttentionFn

HashKernel = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]
KeepKernel = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


class LayerLsh:
    """Bucket ids of one layer: planes drawn once from `seed`, the same for q, for k and at
    every step. `lsh_buckets(x, n_buckets, generator=<seeded alike>)` gives the same ids; the
    planes are kept so that no generator is touched inside the step (torch.compile would break
    its graph there), and the fused kernel hashes q and k in one launch (through the
    `scfa::lsh_buckets_pair` operator when compiled, directly when eager)."""

    def __init__(
        self, n_buckets: int, seed: int, *, heads: int, head_dim: int, device: torch.device | str
    ) -> None:
        from scfa_kernels import lsh_rotations

        generator = torch.Generator(device=device).manual_seed(seed)
        self.n_buckets = n_buckets
        self.rotations = lsh_rotations(
            heads, head_dim, n_buckets, generator=generator, device=device
        )

    def __call__(self, x: Tensor) -> Tensor:
        from scfa_kernels import lsh_buckets_from_rotations

        return lsh_buckets_from_rotations(x, self.rotations)

    def pair(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        from scfa_kernels import lsh_buckets_pair_from_rotations

        return lsh_buckets_pair_from_rotations(q, k, self.rotations)


def hash_attention(kernel: HashKernel, lsh: LayerLsh, *, shared_buckets: bool) -> AttentionFn:
    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if shared_buckets:
            q_hash = k_hash = lsh(q)
        else:
            q_hash, k_hash = lsh.pair(q, k)
        return kernel(q, k, v, q_hash, k_hash)

    return attend


def qk_attention(kernel: KeepKernel, drop_rate: float) -> AttentionFn:
    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, t, h, _ = q.shape
        # Bernoulli(1 - drop_rate), fresh per call, drawn on q's device: no host sync.
        q_keep = torch.rand((b, t, h), device=q.device) >= drop_rate
        k_keep = torch.rand((b, t, h), device=q.device) >= drop_rate
        return kernel(q, k, v, q_keep, k_keep)

    return attend


def sdpa_attention(backend_name: str) -> AttentionFn:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).transpose(1, 2)

    return attend


def identity_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return v


def reference_hash(q: Tensor, k: Tensor, v: Tensor, q_hash: Tensor, k_hash: Tensor) -> Tensor:
    from scfa_kernels import reference

    return reference.hash_sparse_attention(q, k, v, q_hash, k_hash).to(q.dtype)


def reference_qk(q: Tensor, k: Tensor, v: Tensor, q_keep: Tensor, k_keep: Tensor) -> Tensor:
    from scfa_kernels import reference

    return reference.qk_sparse_attention(q, k, v, q_keep, k_keep).to(q.dtype)


def scfa_hash_kernel(n_buckets: int) -> HashKernel:
    """`hash_sparse_attention`, told the bucket count where it accepts one (no host read)."""
    from scfa_kernels import hash_sparse_attention

    try:
        takes_n_buckets = "n_buckets" in inspect.signature(hash_sparse_attention).parameters
    except (TypeError, ValueError):  # a callable without a Python signature
        takes_n_buckets = False
    if takes_n_buckets:
        return partial(hash_sparse_attention, n_buckets=n_buckets)
    return hash_sparse_attention


__all__ = [
    "HashKernel",
    "KeepKernel",
    "LayerLsh",
    "hash_attention",
    "identity_attention",
    "qk_attention",
    "reference_hash",
    "reference_qk",
    "scfa_hash_kernel",
    "sdpa_attention",
]

"""Sparse Causal Flash Attention kernels in Triton: hash-sparse and QK-sparse, exact and causal.

Usable without the benchmarking harness::

    from scfa_kernels import hash_sparse_attention, qk_sparse_attention, lsh_buckets
"""

from __future__ import annotations

from . import reference
from .attention import hash_sparse_attention, qk_sparse_attention
from .hopper import hopper_requested
from .lsh import (
    lsh_buckets,
    lsh_buckets_from_rotations,
    lsh_buckets_pair,
    lsh_buckets_pair_from_rotations,
    lsh_rotations,
)

__all__ = [
    "hash_sparse_attention",
    "hopper_requested",
    "lsh_buckets",
    "lsh_buckets_from_rotations",
    "lsh_buckets_pair",
    "lsh_buckets_pair_from_rotations",
    "lsh_rotations",
    "qk_sparse_attention",
    "reference",
]
__version__ = "0.1.0"

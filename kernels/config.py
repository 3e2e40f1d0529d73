"""Tile sizes, warps and pipeline depth per device, dtype and head dim.

Chosen by measurement (see PERF.md); `override` lets a tuning script try others.

Why on the host and not with `triton.autotune`: the best tiles depend on the mean bucket
size (T / n_buckets), which autotune keys cannot see without reading the bucket ids (a
host sync per call); and autotune benchmarks every candidate on the first call of each new
key, which would land inside a user's timed step or CUDA-graph capture. A table chosen from
host-known values (device, dtype, head dim, T, n_buckets) costs nothing per call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LaunchConfig:
    block_m: int  # query rows per tile
    block_n: int  # key rows per tile
    num_warps: int
    num_stages: int


@dataclass(frozen=True)
class KernelConfig:
    fwd: LaunchConfig
    dkdv: LaunchConfig
    dq: LaunchConfig
    delta_block_m: int = 128


# Small tiles in the interpreter: tests with T <= 256 still cross many tiles.
_INTERPRETER = KernelConfig(
    fwd=LaunchConfig(16, 16, 1, 1),
    dkdv=LaunchConfig(16, 16, 1, 1),
    dq=LaunchConfig(16, 16, 1, 1),
    delta_block_m=16,
)

# Measured on an H100 (PERF.md, v2 and v3 sweeps at T=16384): large buckets (and QK-sparse, whose
# kept rows form one bucket) want big tiles; small buckets waste less with small tiles.
_CUDA_LARGE_BUCKETS = KernelConfig(
    fwd=LaunchConfig(128, 128, 4, 2),
    dkdv=LaunchConfig(32, 128, 4, 3),  # v3 sweep: deeper pipeline, 3% over (64, 64, 4, 2)
    dq=LaunchConfig(128, 32, 4, 5),
)
_CUDA_MEDIUM_BUCKETS = KernelConfig(
    fwd=LaunchConfig(128, 64, 4, 3),
    dkdv=LaunchConfig(32, 64, 4, 1),
    dq=LaunchConfig(64, 32, 4, 3),
)
_CUDA_SMALL_BUCKETS = KernelConfig(
    fwd=LaunchConfig(64, 32, 4, 3),
    dkdv=LaunchConfig(32, 64, 4, 1),
    dq=LaunchConfig(64, 32, 4, 3),
)
# Head dim 128 (v1 sweep): 64 x 64 tiles everywhere.
_CUDA_HEAD_128 = KernelConfig(
    fwd=LaunchConfig(64, 64, 4, 2),
    dkdv=LaunchConfig(64, 64, 4, 2),
    dq=LaunchConfig(64, 64, 4, 2),
)

_CUDA_FLOAT32 = KernelConfig(
    fwd=LaunchConfig(64, 32, 4, 2),
    dkdv=LaunchConfig(32, 32, 4, 2),
    dq=LaunchConfig(32, 32, 4, 2),
)

_override: KernelConfig | None = None


def select(
    device: torch.device, dtype: torch.dtype, head_dim: int, mean_bucket_rows: float
) -> KernelConfig:
    """Launch configuration; `mean_bucket_rows` = T / number of buckets (T for QK-sparse)."""
    if _override is not None:
        return _override
    if device.type != "cuda":
        return _INTERPRETER
    if dtype == torch.float32:
        return _CUDA_FLOAT32
    if head_dim == 128:
        return _CUDA_HEAD_128
    if mean_bucket_rows >= 4096:
        return _CUDA_LARGE_BUCKETS
    if mean_bucket_rows > 1024:
        return _CUDA_MEDIUM_BUCKETS
    return _CUDA_SMALL_BUCKETS


@contextlib.contextmanager
def override(config: KernelConfig) -> Iterator[None]:
    """Use `config` for every launch inside the block (tuning experiments)."""
    global _override
    previous, _override = _override, config
    try:
        yield
    finally:
        _override = previous

"""Tile sizes, warps and pipeline depth per device, dtype and head dim.

Chosen by measurement (see PERF.md); `override` lets a tuning script try others.
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

# v1 (PERF.md): the best of the v0 sweep at D=64 over 1 and 8 buckets, T=16384.
_CUDA_SMALL_HEAD = KernelConfig(
    fwd=LaunchConfig(128, 128, 4, 2),
    dkdv=LaunchConfig(64, 64, 4, 2),
    dq=LaunchConfig(64, 64, 4, 2),
)
_CUDA_16BIT = {
    16: _CUDA_SMALL_HEAD,
    32: _CUDA_SMALL_HEAD,
    64: _CUDA_SMALL_HEAD,
    128: KernelConfig(
        fwd=LaunchConfig(128, 64, 8, 2),
        dkdv=LaunchConfig(64, 64, 4, 2),
        dq=LaunchConfig(64, 64, 4, 2),
    ),
}

_CUDA_FLOAT32 = KernelConfig(
    fwd=LaunchConfig(64, 32, 4, 2),
    dkdv=LaunchConfig(32, 32, 4, 2),
    dq=LaunchConfig(32, 32, 4, 2),
)

_override: KernelConfig | None = None


def select(device: torch.device, dtype: torch.dtype, head_dim: int) -> KernelConfig:
    if _override is not None:
        return _override
    if device.type != "cuda":
        return _INTERPRETER
    if dtype == torch.float32:
        return _CUDA_FLOAT32
    return _CUDA_16BIT[head_dim]


@contextlib.contextmanager
def override(config: KernelConfig) -> Iterator[None]:
    """Use `config` for every launch inside the block (tuning experiments)."""
    global _override
    previous, _override = _override, config
    try:
        yield
    finally:
        _override = previous

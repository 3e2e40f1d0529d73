"""Kernels with query tiles (block_m) and key tiles (block_n) of different sizes.

The interpreter's default tiles are 16 x 16, where a plan that mixes up block_m and block_n
still gives the right ranges; here the forward, dK/dV and dQ run with 16 x 32 and 32 x 16
tiles against the reference, so such a mix-up fails a kernel test, not only the range tests.
"""

from __future__ import annotations

import pytest
import torch

from scfa_kernels import config
from scfa_kernels.config import KernelConfig, LaunchConfig
from scfa_kernels.testing import check_backward, check_forward, make_qkv, random_hash, random_keep


def _tiles(block_m: int, block_n: int) -> KernelConfig:
    launch = LaunchConfig(block_m, block_n, 1, 1)
    split = config._INTERPRETER_SPLIT  # long ranges also run as pieces
    return KernelConfig(
        fwd=launch,
        dkdv=launch,
        dq=launch,
        delta_block_m=16,
        fwd_split=split,
        dkdv_split=split,
        dq_split=split,
    )


@pytest.mark.parametrize(("block_m", "block_n"), [(16, 32), (32, 16)])
@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_unequal_tiles_match_reference(device: str, block_m: int, block_n: int, kind: str):
    b, t, h, d = 1, 64, 2, 16
    q, k, v = make_qkv(b, t, h, d, torch.float32, device, seed=21)
    if kind == "hash":
        pattern = random_hash(b, t, h, 2, device, seed=22)
    else:
        pattern = random_keep(b, t, h, 0.3, device, seed=23)
    with config.override(_tiles(block_m, block_n)):
        check_forward(pattern, q, k, v)
        check_backward(pattern, q, k, v, seed=24)

"""Seeded inputs for one point: q, k, v and the sparsity pattern (hash buckets or keep masks).

Seeds come from the suite seed and the point through SHA-256 (stable across processes, unlike
Python's salted `hash()`). q, k, v depend only on (seed, shape, seq_len), so every implementation
at a seq_len sees the same tensors; the pattern also depends on n_buckets / drop_rate.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs
from scfa_bench.suite.grid import Point
from scfa_bench.suite.schema import Shape

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' text, identical in every process."""
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def _generator(device: str, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def make_inputs(
    shape: Shape,
    point: Point,
    *,
    seed: int,
    device: str,
    buckets: str = "random",
    requires_grad: bool = False,
) -> AttentionInputs:
    """q, k, v ~ N(0, 1) in the suite dtype, plus buckets (random or LSH) or keep masks."""
    b, h, d, t = shape.batch, shape.heads, shape.head_dim, point.seq_len
    dtype = TORCH_DTYPES[shape.dtype]
    gen = _generator(device, stable_seed(seed, "qkv", b, h, d, shape.dtype, t))
    q, k, v = (
        torch.randn((b, t, h, d), generator=gen, device=device, dtype=dtype).requires_grad_(
            requires_grad
        )
        for _ in range(3)
    )
    inputs = AttentionInputs(q=q, k=k, v=v)

    if point.n_buckets is not None:
        nb = point.n_buckets
        inputs.n_buckets = nb
        pattern_seed = stable_seed(seed, "buckets", buckets, b, h, t, nb)
        if buckets == "lsh":
            from scfa_kernels import lsh_buckets

            # Same seed for both generators: queries and keys are hashed with the same planes R.
            with torch.no_grad():
                inputs.q_hash = lsh_buckets(q, nb, generator=_generator(device, pattern_seed))
                inputs.k_hash = lsh_buckets(k, nb, generator=_generator(device, pattern_seed))
        elif buckets == "lsh_shared":
            from scfa_kernels import lsh_buckets

            # Shared buckets (keys hashed as their queries): one tensor for both sides.
            with torch.no_grad():
                inputs.q_hash = lsh_buckets(q, nb, generator=_generator(device, pattern_seed))
            inputs.k_hash = inputs.q_hash
        else:
            gen = _generator(device, pattern_seed)
            inputs.q_hash, inputs.k_hash = (
                torch.randint(0, nb, (b, t, h), generator=gen, device=device, dtype=torch.int32)
                for _ in range(2)
            )

    if point.drop_rate is not None:
        gen = _generator(device, stable_seed(seed, "keep", b, h, t, point.drop_rate))
        # Bernoulli(1 - drop_rate) per (b, t, h).
        inputs.q_keep, inputs.k_keep = (
            torch.rand((b, t, h), generator=gen, device=device) >= point.drop_rate for _ in range(2)
        )
    return inputs


def output_grad(out: Tensor, *, seed: int) -> Tensor:
    """A seeded upstream gradient dO shaped like the output."""
    gen = _generator(out.device.type, stable_seed(seed, "do", tuple(out.shape)))
    return torch.randn(out.shape, generator=gen, device=out.device, dtype=out.dtype)

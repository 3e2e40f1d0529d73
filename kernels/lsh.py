"""Angular LSH bucket ids (Andoni et al. 2015, as in Reformer)."""

from __future__ import annotations

import torch


def lsh_buckets(
    x: torch.Tensor, n_buckets: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Bucket ids ``argmax(concat(x @ R, -x @ R))`` with one random unit-column R per head.

    x: (B, T, H, D). n_buckets: even, >= 2. R: (D, n_buckets // 2) per head, drawn from
    `generator` (on the generator's device, then moved to x's). Returns int32 (B, T, H).
    Hashing q and k with generators seeded alike gives both the same R, as the patterns need.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)
        raise ValueError(f"x: expected a 4-D tensor (B, T, H, D), got {shape}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating-point dtype, got {x.dtype}")
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, int):
        raise TypeError(f"n_buckets: expected an int, got {type(n_buckets)!r}")
    if n_buckets < 2 or n_buckets % 2:
        raise ValueError(f"n_buckets: expected an even number >= 2, got {n_buckets}")
    _, _, H, D = x.shape
    draw_device = generator.device if generator is not None else x.device
    rotations = torch.randn(
        (H, D, n_buckets // 2), generator=generator, device=draw_device, dtype=torch.float32
    )
    rotations = rotations / rotations.norm(dim=1, keepdim=True)
    projected = torch.einsum("bthd,hdr->bthr", x.float(), rotations.to(x.device))
    return torch.cat([projected, -projected], dim=-1).argmax(dim=-1).to(torch.int32)

"""`tools/gpu_e2e_probe.py`: its density of allowed causal pairs against a direct count."""

from __future__ import annotations

import pytest
import torch

from ..tool_loader import load_tool


@pytest.mark.parametrize(("T", "n_buckets"), [(1, 2), (37, 4), (64, 1)])
def test_causal_density_counts_same_bucket_pairs_at_or_before_the_query(
    T: int, n_buckets: int
) -> None:
    causal_density = load_tool("gpu_e2e_probe").causal_density
    g = torch.Generator().manual_seed(T)
    q = torch.randint(0, n_buckets, (2, T, 3), generator=g)
    k = torch.randint(0, n_buckets, (2, T, 3), generator=g)
    density = causal_density(q, k, n_buckets)
    for b in range(2):
        for h in range(3):
            pairs = sum(int(q[b, i, h] == k[b, j, h]) for i in range(T) for j in range(i + 1))
            assert density[b, h].item() == pytest.approx(pairs / (T * (T + 1) / 2))
    if n_buckets == 1:
        assert torch.all(density == 1.0)

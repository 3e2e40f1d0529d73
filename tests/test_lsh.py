"""Angular LSH bucket ids: shape, range, seeding, one rotation per head, and the geometry.

lsh_buckets(x, nb) = argmax(concat(x R, -x R)) with a random unit-column R per head, so the
ids depend only on the direction of x, and -x lands exactly nb/2 buckets away.
"""

from __future__ import annotations

import pytest
import torch

from scfa_kernels import lsh_buckets


def _x(b: int = 2, t: int = 64, h: int = 3, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, h, d, generator=torch.Generator().manual_seed(seed))


def _buckets(x: torch.Tensor, n_buckets: int, seed: int) -> torch.Tensor:
    return lsh_buckets(x, n_buckets, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_buckets", [2, 4, 8, 64])
def test_shape_dtype_and_range(n_buckets):
    x = _x()
    ids = _buckets(x, n_buckets, seed=1)
    assert ids.shape == x.shape[:3] and ids.dtype == torch.int32
    assert int(ids.min()) >= 0 and int(ids.max()) < n_buckets


def test_spreads_random_vectors_over_all_buckets():
    ids = _buckets(_x(b=1, t=2048, h=1, d=32), 8, seed=2)
    counts = torch.bincount(ids.flatten().long(), minlength=8)
    assert (counts > 0).all(), counts.tolist()


def test_same_seed_same_buckets_other_seed_differs():
    x = _x()
    assert torch.equal(_buckets(x, 8, seed=3), _buckets(x, 8, seed=3))
    assert not torch.equal(_buckets(x, 8, seed=3), _buckets(x, 8, seed=4))


def test_one_rotation_per_head():
    # The same vectors in every head: only different rotations can make the heads differ.
    x = _x(h=1, t=256).expand(2, 256, 4, 16).contiguous()
    ids = _buckets(x, 8, seed=5)
    for h in range(1, 4):
        assert not torch.equal(ids[:, :, 0], ids[:, :, h]), f"head {h} reuses head 0's rotation"


@pytest.mark.parametrize("factor", [3.0, 0.01])
def test_scale_invariant(factor):
    x = _x(seed=6)
    assert torch.equal(_buckets(x, 16, seed=7), _buckets(x * factor, 16, seed=7))


@pytest.mark.parametrize("n_buckets", [2, 8, 32])
def test_antipodal_vectors_land_half_way_round(n_buckets):
    x = _x(seed=8)
    ids = _buckets(x, n_buckets, seed=9).long()
    opposite = _buckets(-x, n_buckets, seed=9).long()
    assert torch.equal(opposite, (ids + n_buckets // 2) % n_buckets)


def test_nearby_vectors_mostly_share_a_bucket():
    # Locality: a tiny perturbation rarely crosses a bucket boundary; random vectors often do.
    x = _x(b=1, t=1024, h=2, d=32, seed=10)
    noise = 1e-3 * _x(b=1, t=1024, h=2, d=32, seed=11)
    ids = _buckets(x, 8, seed=12)
    same_near = (ids == _buckets(x + noise, 8, seed=12)).float().mean().item()
    same_random = (ids == _buckets(_x(b=1, t=1024, h=2, d=32, seed=13), 8, seed=12)).float().mean()
    assert same_near > 0.95
    assert same_random.item() < 0.5


@pytest.mark.parametrize("n_buckets", [1, 3, 9])
def test_odd_bucket_count_raises(n_buckets):
    with pytest.raises(ValueError, match="n_buckets"):
        lsh_buckets(_x(), n_buckets)


def test_half_precision_input_gives_same_ids_as_its_float32_copy():
    x = _x(seed=14).half()
    assert torch.equal(_buckets(x, 8, seed=15), _buckets(x.float(), 8, seed=15))
